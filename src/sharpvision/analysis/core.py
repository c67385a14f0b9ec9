"""What every loss-geometry measurement shares: a fixed data sample, a recorded model mode, and the
Hessian-vector product over that sample.

Analysis functions take ``(model, loss_fn, data)``: ``data`` is a list of ``(x, y)`` batches (see
:func:`sample_batches`), the loss is averaged over all of them weighted by batch size, so the result does
not depend on how the sample was split. Second-order autograd needs the *math* attention path: fused SDPA
kernels have neither double backward nor forward-mode AD, so :func:`analysis_mode` pins SDPA to its math kernel
(timm's ``fused_attn`` path then runs it; measured faster per Hessian-vector product than timm's own Python
attention, ``benchmarks/hvp_levers.py``) and restores the choice afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset

from sharpvision.passes import frozen_bn_stats

Batches = list[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Vector = list[torch.Tensor]  # one tensor per parameter, the layout of ``params``


def sample_batches(dataset: Dataset, n: int, batch_size: int = 256, seed: int = 0,
                   device: torch.device | str = "cpu") -> Batches:
    """A fixed, seeded sample of ``n`` examples of ``dataset`` as batches on ``device``.

    The same (dataset, n, seed) gives the same examples, so curvature measured on two checkpoints is
    measured on the same data. Augmentation in ``dataset`` is applied once, when the sample is drawn.
    """
    if not 0 < n <= len(dataset):
        raise ValueError(f"analysis sample size {n} must be in [1, {len(dataset)}] (the dataset's size)")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    batches = []
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in order[start:start + batch_size]]
        x = torch.stack([torch.as_tensor(a) for a, _ in items]).to(device)
        y = torch.as_tensor([int(b) for _, b in items]).to(device)
        batches.append((x, y))
    return batches


def num_examples(data: Batches) -> int:
    return sum(len(y) for _, y in data)


@contextmanager
def analysis_mode(model: nn.Module, mode: str = "eval", math_attention: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in ``mode`` ("eval" or "train") with math attention; restore everything after.

    eval is the default policy: BatchNorm uses its running statistics and dropout is off, so the loss is
    a deterministic function of the weights (what the Hessian and the landscape are defined on). In train
    mode BatchNorm normalises with batch statistics, and its running statistics are restored afterwards:
    measuring must not change the model. ``math_attention=False`` keeps fused attention (first-order use).
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"analysis mode must be 'eval' or 'train', got {mode!r}")
    was_training = model.training
    with ExitStack() as stack:
        if math_attention:
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        stack.enter_context(frozen_bn_stats(model))
        model.train(mode == "train")
        try:
            yield model
        finally:
            model.train(was_training)


def in_dtype(model: nn.Module, data: Batches, dtype: torch.dtype) -> tuple[nn.Module, Batches]:
    """A copy of the model and data in ``dtype`` (float64 for validation); the same objects for float32."""
    if dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters()):
        return model, data
    cast = [(x.to(dtype) if x.is_floating_point() else x, y) for x, y in data]
    return copy.deepcopy(model).to(dtype), cast


def blocks(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names grouped by block, in forward order: ``stem``, ``blocks.0`` ... / ``stages.0`` ..., ``head``.

    timm ViT and Mixer keep their blocks in ``blocks``, ResNet in ``layer1..4``, ConvNeXt in ``stages``;
    everything before the first block is the stem, everything after the last is the head.
    """
    groups: dict[str, list[str]] = {}
    seen_block = False
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        if parts[0] in ("blocks", "stages") and len(parts) > 2 and parts[1].isdigit():
            key, seen_block = f"{parts[0]}.{parts[1]}", True
        elif parts[0].startswith("layer") and parts[0][5:].isdigit():
            key, seen_block = parts[0], True
        else:
            key = "head" if seen_block else "stem"
        groups.setdefault(key, []).append(name)
    return groups


def select_params(model: nn.Module, names: Sequence[str] | None = None) -> tuple[list[str], list[nn.Parameter]]:
    """The trainable parameters named in ``names`` (all when None), in model order."""
    table = {n: p for n, p in model.named_parameters() if p.requires_grad}
    chosen = list(table) if names is None else [n for n in table if n in set(names)]
    if not chosen:
        raise ValueError("no trainable parameter selected for analysis")
    return chosen, [table[n] for n in chosen]


def mean_loss(model: nn.Module, loss_fn: LossFn, data: Batches) -> torch.Tensor:
    """Loss averaged over every example of ``data`` (batches weighted by size), as a graph."""
    total = num_examples(data)
    return sum(loss_fn(model(x), y) * (len(y) / total) for x, y in data)


def keeps_graph(data: Batches, keep_graph: bool | None) -> bool:
    """The graph policy of :func:`hvp_operator`: ``None`` keeps it when ``data`` is a single batch."""
    return len(data) == 1 if keep_graph is None else keep_graph


KEPT_CHUNK = 64  # examples per kept gradient graph


class HessianVectorProduct:
    """v -> H v for the Hessian of the mean loss over ``data`` w.r.t. ``params`` (double backward).

    Streaming (``keep_graph=False``): each call runs one forward and two backward passes per batch and sums
    the per-batch products weighted by batch size, so memory stays at one batch however large the sample is.
    ``keep_graph=True`` builds each batch's gradient graph once and each call only backpropagates through it
    (as PyHessian's single-batch mode does): about 30% less time per product, for the memory of every batch's
    graph at once. ``None`` keeps it when ``data`` is a single batch. Kept graphs are built on chunks of at most
    ``KEPT_CHUNK`` examples: the same memory, and 7-25% less time per product on a CPU than one 256-example graph
    (``benchmarks/hvp_levers.py``). Call it inside :func:`analysis_mode`.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Batches, params: Sequence[nn.Parameter],
                 keep_graph: bool | None = None) -> None:
        self.model, self.loss_fn, self.data, self.params = model, loss_fn, data, list(params)
        self.total = num_examples(data)
        self.keep = keeps_graph(data, keep_graph)
        self.graphs: list[tuple[torch.Tensor, ...]] = []

    def _grads(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool = True) -> tuple[torch.Tensor, ...]:
        loss = self.loss_fn(self.model(x), y) * (len(y) / self.total)
        return torch.autograd.grad(loss, self.params, create_graph=create_graph)

    def _kept(self) -> list[tuple[torch.Tensor, ...]]:
        if not self.graphs:
            self.graphs.extend(self._grads(x[s:s + KEPT_CHUNK], y[s:s + KEPT_CHUNK])
                               for x, y in self.data for s in range(0, len(y), KEPT_CHUNK))
        return self.graphs

    def gradient(self) -> Vector:
        """The gradient of the mean loss: read off the kept graphs (free), else one backward pass per batch."""
        out = [torch.zeros_like(p) for p in self.params]
        for g in self._kept() if self.keep else (self._grads(x, y, create_graph=False) for x, y in self.data):
            for acc, part in zip(out, g):
                acc.add_(part.detach())
        return out

    def __call__(self, v: Vector) -> Vector:
        out = [torch.zeros_like(p) for p in self.params]
        for g in self._kept() if self.keep else (self._grads(x, y) for x, y in self.data):
            for acc, h in zip(out, torch.autograd.grad(g, self.params, v, retain_graph=self.keep)):
                acc.add_(h)
        return out


def hvp_operator(model: nn.Module, loss_fn: LossFn, data: Batches, params: Sequence[nn.Parameter],
                 keep_graph: bool | None = None) -> HessianVectorProduct:
    """v -> H v over ``data`` w.r.t. ``params``: see :class:`HessianVectorProduct`."""
    return HessianVectorProduct(model, loss_fn, data, params, keep_graph)


def dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def norm(a: Vector) -> torch.Tensor:
    return dot(a, a).sqrt()


_PROGRESS: ContextVar[Callable[[int], None] | None] = ContextVar("analysis_progress", default=None)


@contextmanager
def reporting(callback: Callable[[int], None]) -> Iterator[None]:
    """Send the units of work done inside (see :func:`advance`) to ``callback``: how ``sharpvision analyze`` drives
    a progress bar per piece without every measurement taking a progress argument."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def advance(units: int = 1) -> None:
    """``units`` of a measurement's work are done (a Hessian-vector product, a landscape point, a noise draw)."""
    callback = _PROGRESS.get()
    if callback is not None:
        callback(units)


def settings(**kwargs: Any) -> dict[str, Any]:
    """The settings recorded next to every result (sample size, iterations, tolerance, seed, mode, dtype)."""
    return {k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v) for k, v in kwargs.items()}
