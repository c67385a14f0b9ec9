"""Empirical neural tangent kernel at initialisation and its condition number (Xiao et al. 2020; Chen et al. 2022,
Table 1).

Theta = J J^T, with J the Jacobian of the network outputs w.r.t. all trainable parameters on n inputs. Gradient
descent on the linearised network converges along each eigendirection of Theta at a rate set by its eigenvalue, so
kappa = lambda_max / lambda_min says how hard the model is to train from its initialisation: Chen et al. use it to
show that ViTs and Mixers start far worse conditioned than ResNets.

Memory: J has n R P entries (R = 1 or the number of classes, P parameters), far too many for a paper-sized model in
float64. Theta is therefore built block by block from pairs of chunks of ``chunk`` samples, with per-sample gradients
from ``torch.func`` (vmap over grad / jacrev), so one chunk's rows cost chunk R P numbers. When all of J fits in
``max_cache_gb`` its k chunks are computed once and kept on the model's device; otherwise the second chunk of each
pair is recomputed (k (k + 1) / 2 Jacobian evaluations instead of k, memory for two chunks).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from sharpvision.analysis.core import Batches, analysis_mode, in_dtype, select_params, settings

REDUCTIONS = ("sum", "full")


def ntk_matrix(model: nn.Module, inputs: torch.Tensor | Batches, reduction: str = "sum", chunk: int = 32,
               dtype: torch.dtype = torch.float64, mode: str = "eval", max_cache_gb: float = 4.0) -> torch.Tensor:
    """The empirical NTK J J^T on ``inputs`` (a tensor of n inputs, or batches whose labels are ignored).

    ``reduction="sum"``: one row of J per sample, the gradient of its summed logits (n x n kernel, Chen et al.'s
    choice, cheap for many classes). ``"full"``: one row per (sample, class), sample-major (nC x nC kernel).
    The model is evaluated in a ``dtype`` copy (float64 by default, as small eigenvalues need it) under
    :func:`analysis_mode`; the model itself is left as it was.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"NTK reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if chunk < 1:
        raise ValueError(f"NTK chunk must be >= 1, got {chunk}")
    x = _stack(inputs)
    work, [(x, _)] = in_dtype(model, [(x, torch.zeros(len(x), dtype=torch.long))], dtype)
    with analysis_mode(work, mode):
        _refuse_batch_statistics(work)
        names, params = select_params(work)
        jacobian = _jacobian_rows(work, names, params, reduction)
        with torch.no_grad():
            width = 1 if reduction == "sum" else work(x[:1]).shape[-1]
        pieces = [x[s:s + chunk] for s in range(0, len(x), chunk)]
        starts = [s * width for s in range(0, len(x), chunk)] + [len(x) * width]
        jac_bytes = len(x) * width * sum(p.numel() for p in params) * params[0].element_size()
        cache = [jacobian(piece) for piece in pieces] if jac_bytes <= max_cache_gb * 2**30 else None

        def rows_of(i: int) -> list[torch.Tensor]:
            return cache[i] if cache is not None else jacobian(pieces[i])

        theta = torch.zeros(starts[-1], starts[-1], dtype=params[0].dtype, device=params[0].device)
        for i in range(len(pieces)):
            ji = rows_of(i)
            for j in range(i + 1):
                jj = ji if j == i else rows_of(j)
                block = sum(a @ b.T for a, b in zip(ji, jj))
                theta[starts[i]:starts[i + 1], starts[j]:starts[j + 1]] = block
                theta[starts[j]:starts[j + 1], starts[i]:starts[i + 1]] = block.T
    return theta


def ntk_condition_number(model: nn.Module, inputs: torch.Tensor | Batches, reduction: str = "sum", chunk: int = 32,
                         dtype: torch.dtype = torch.float64, mode: str = "eval",
                         max_cache_gb: float = 4.0) -> dict[str, Any]:
    """kappa = lambda_max / lambda_min of :func:`ntk_matrix` (eigvalsh in float64).

    kappa is inf when Theta is singular to working precision, lambda_min <= rows * eps(dtype) * lambda_max (numpy's
    matrix_rank tolerance; e.g. more rows than parameters): a finite ratio of rounding noise would mean nothing.
    """
    model, head = drawn_head(model)
    theta = ntk_matrix(model, inputs, reduction, chunk, dtype, mode, max_cache_gb)
    eig = torch.linalg.eigvalsh(theta.detach().to("cpu", torch.float64)).flip(0).tolist()
    n = len(_stack(inputs))
    recorded = settings(n=n, reduction=reduction, chunk=chunk, dtype=dtype, mode=mode, max_cache_gb=max_cache_gb,
                        rows=len(eig), params=sum(p.numel() for p in select_params(model)[1]))
    singular = eig[-1] <= len(eig) * torch.finfo(dtype).eps * eig[0]
    return {"kappa": math.inf if singular else eig[0] / eig[-1], "lambda_max": eig[0], "lambda_min": eig[-1],
            "eigenvalues": eig, "n": n, "reduction": reduction, "dtype": recorded["dtype"], "head": head,
            "settings": recorded}


HEAD_STD = 0.02  # timm's ViT head: trunc_normal_(std=0.02), bias 0


def drawn_head(model: nn.Module, seed: int = 0) -> tuple[nn.Module, str]:
    """The model with a classifier that does not start at zero, and what was done.

    timm zero-initialises the MLP-Mixer's head: at that point every gradient but the head's is zero, J has rank at
    most the feature width, and kappa is inf for any n above it: a property of the zero, not a measurement of the
    network. Such a head is redrawn on a copy as the ViT's is (truncated normal, std 0.02, bias 0; seeded), so the
    families are compared with heads drawn alike; any other model is used as it is."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear) or bool(head.weight.detach().any()):
        return model, "as initialised"
    work = copy.deepcopy(model)
    with torch.no_grad():
        w = work.get_classifier().weight
        drawn = torch.empty(w.shape, dtype=torch.float64)
        nn.init.trunc_normal_(drawn, std=HEAD_STD, a=-2 * HEAD_STD, b=2 * HEAD_STD,
                              generator=torch.Generator().manual_seed(seed))
        w.copy_(drawn.to(w.dtype))
        if work.get_classifier().bias is not None:
            work.get_classifier().bias.zero_()
    return work, f"redrawn (timm starts it at zero): truncated normal std {HEAD_STD}, bias 0, like the ViT's"


def _stack(inputs: torch.Tensor | Batches) -> torch.Tensor:
    return inputs if isinstance(inputs, torch.Tensor) else torch.cat([x for x, _ in inputs])


def _refuse_batch_statistics(model: nn.Module) -> None:
    """vmap runs the network on one sample at a time, so BatchNorm on batch statistics would normalise each sample
    by itself: a different function from the batched one, whose samples interact. Only running statistics work."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None):
            raise ValueError(f"the NTK needs per-sample outputs, but BatchNorm {name!r} normalises with batch "
                             "statistics (train mode or track_running_stats=False); use mode='eval'")


def _jacobian_rows(model: nn.Module, names: list[str], params: list[nn.Parameter],
                   reduction: str) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """x chunk -> J's rows for it, one (rows, numel) tensor per parameter (never concatenated: that would copy)."""
    primals = {n: p.detach() for n, p in zip(names, params)}

    def output(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, theta, (x.unsqueeze(0),)).squeeze(0)
        return out.sum() if reduction == "sum" else out

    per_sample = vmap(grad(output) if reduction == "sum" else jacrev(output), in_dims=(None, 0))

    def rows(x: torch.Tensor) -> list[torch.Tensor]:
        jac = per_sample(primals, x)  # name -> (chunk, *shape) for "sum", (chunk, C, *shape) for "full"
        return [jac[n].reshape(-1, primals[n].numel()) for n in names]

    return rows
