"""Structured pruning of hidden widths: the hidden units of every MLP (ViT, Mixer, ConvNeXt) and the inner channels
of every ResNet block, removed for real, so the pruned model has fewer parameters and FLOPs.

Chen et al. find that SAM leaves far fewer active neurons in a ViT's first blocks; a unit that never fires costs
compute and contributes little. Only widths inside a block are pruned (an MLP's hidden layer, a ResNet block's
conv1/conv2 outputs), never the residual stream, so each cut touches exactly one producer (and its norm) and one
consumer: the slicing is exact and needs no dependency graph. A pruned model is rebuilt from its recipe:
``model.widths`` names each width kept, and :func:`shrink_to` cuts a fresh model to them before its weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import Mlp
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from sharpvision.config import ConfigError


@dataclass(frozen=True)
class Width:
    """One prunable width: units that ``producers`` output (dim 0 of their weights), ``act`` outputs (the units
    sit on ``unit_dim`` of its output) and ``consumer`` reads (dim 1 of its weight)."""

    name: str
    producers: tuple[str, ...]  # the layer that makes the units, then any norm over them
    act: str  # the nonlinearity whose outputs are the units (activity is counted there)
    consumer: str
    unit_dim: int  # -1 for an MLP's (..., hidden) activations, 1 for a conv's N x C x H x W
    size: int


def prunable(model: nn.Module) -> dict[str, Width]:
    """Every width :func:`shrink` can cut, in module order: timm ``Mlp`` hidden layers and the inner widths of
    timm ``BasicBlock`` (conv1) and ``Bottleneck`` (conv1, conv2) blocks without groups or anti-aliasing."""
    found: dict[str, Width] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, Mlp) and isinstance(module.fc1, (nn.Linear, nn.Conv2d)):
            norm = () if isinstance(module.norm, nn.Identity) else (f"{prefix}norm",)
            found[name] = Width(name, (f"{prefix}fc1", *norm), f"{prefix}act", f"{prefix}fc2",
                                1 if isinstance(module.fc1, nn.Conv2d) else -1, _out(module.fc1))
        elif isinstance(module, (BasicBlock, Bottleneck)) and isinstance(module.aa, nn.Identity):
            inner = [("conv1", "bn1", "act1", "conv2")]
            if isinstance(module, Bottleneck):
                inner.append(("conv2", "bn2", "act2", "conv3"))
            for conv, bn, act, nxt in inner:
                if module.get_submodule(conv).groups == 1 and module.get_submodule(nxt).groups == 1:
                    found[f"{prefix}{conv}"] = Width(f"{prefix}{conv}", (f"{prefix}{conv}", f"{prefix}{bn}"),
                                                     f"{prefix}{act}", f"{prefix}{nxt}", 1,
                                                     module.get_submodule(conv).out_channels)
    return found


def shrink(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """Cut ``model`` in place to the units ``keep`` lists for each width (sorted indices); returns it.

    Producers keep those rows (and their norm those entries, running statistics included); the consumer keeps those
    input columns. The function of the model is that of the original with the other units' outgoing weights set to
    zero (the tests check this identity).
    """
    widths = prunable(model)
    unknown = sorted(set(keep) - set(widths))
    if unknown:
        raise ConfigError(f"model.widths: {', '.join(unknown)} not prunable widths of {type(model).__name__} "
                          f"(these are: {', '.join(list(widths)[:4])}{' ...' if len(widths) > 4 else ''})")
    for name, idx in keep.items():
        width = widths[name]
        idx = torch.as_tensor(idx, dtype=torch.long)
        if len(idx) < 1 or len(idx) > width.size or int(idx.max()) >= width.size or len(idx.unique()) != len(idx):
            raise ConfigError(f"model.widths.{name}: {len(idx)} units do not fit its {width.size}")
        for producer in width.producers:
            _slice(model.get_submodule(producer), idx, dim=0)
        _slice(model.get_submodule(width.consumer), idx, dim=1)
    return model


def shrink_to(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """A fresh model cut to the widths a pruned recipe records (the first units; its checkpoint fills them)."""
    return shrink(model, {name: torch.arange(n) for name, n in widths.items()})


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per unit: the L2 norm of its incoming and outgoing weights together, the usual magnitude criterion."""
    scores = {}
    for name, width in prunable(model).items():
        w_in = model.get_submodule(width.producers[0]).weight.detach().float()
        w_out = model.get_submodule(width.consumer).weight.detach().float()
        scores[name] = (w_in.flatten(1).pow(2).sum(1) + w_out.transpose(0, 1).flatten(1).pow(2).sum(1)).sqrt().cpu()
    return scores


def keep_top(scores: dict[str, torch.Tensor], amount: float, tiebreak: dict[str, torch.Tensor] | None = None
             ) -> dict[str, torch.Tensor]:
    """Per width, the sorted indices of the ``round((1 - amount) * size)`` (at least one) highest-scoring units;
    equal scores are ordered by ``tiebreak`` (e.g. magnitude among units that never fire)."""
    out = {}
    for name, score in scores.items():
        k = max(1, round((1 - amount) * len(score)))
        order = torch.argsort(tiebreak[name], descending=True, stable=True) if tiebreak else torch.arange(len(score))
        ranked = order[torch.argsort(score[order], descending=True, stable=True)]
        out[name] = ranked[:k].sort().values
    return out


def _out(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _slice(module: nn.Module, idx: torch.Tensor, dim: int) -> None:
    """Keep entries ``idx`` of ``module``'s weights along ``dim`` (0: outputs, 1: inputs), updating its sizes."""
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        raise ConfigError(f"{type(module).__name__} with groups={module.groups} cannot be pruned here")
    for attr in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(module, attr, None)
        if tensor is None or (attr == "bias" and dim == 1) or (tensor.ndim == 1 and dim == 1):
            continue
        cut = tensor.detach().index_select(dim, idx.to(tensor.device)).clone()
        setattr(module, attr, nn.Parameter(cut, requires_grad=tensor.requires_grad) if isinstance(
            tensor, nn.Parameter) else cut)
    n = len(idx)
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = (n, module.in_features) if dim == 0 else (module.out_features, n)
    elif isinstance(module, nn.Conv2d):
        module.out_channels, module.in_channels = (n, module.in_channels) if dim == 0 else (module.out_channels, n)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = n
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (n,)
    else:
        raise ConfigError(f"{type(module).__name__} cannot be pruned here")
