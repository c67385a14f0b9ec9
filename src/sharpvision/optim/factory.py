"""Base optimizers by name, SAM wrapping, weight-decay groups and learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from sharpvision.config import OptimConfig, ScheduleConfig
from sharpvision.optim.sam import SAM
from sharpvision.optim.variants import GSAM, LookSAM


def base_optimizer(name: str) -> type[Optimizer]:
    """The torch.optim-compatible class for a recipe's ``optim.name``."""
    if name == "adamw":
        return torch.optim.AdamW
    if name == "sgd":
        return torch.optim.SGD
    if name == "lamb":
        from timm.optim import Lamb  # timm's LAMB (You et al. 2020), as in big_vision's ViT recipes
        return Lamb
    raise ValueError(f"optim.name: unknown optimizer {name!r}; expected adamw, sgd or lamb")


def base_kwargs(cfg: OptimConfig, fused: bool = False) -> dict[str, Any]:
    """Constructor arguments of the base optimizer (weight decay is set per group).

    ``fused``: torch's fused AdamW / SGD kernels (one launch for all tensors; CUDA); timm's LAMB has none.
    """
    extra = {"fused": True} if fused and cfg.name in ("adamw", "sgd") else {}
    if cfg.name == "sgd":
        return dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **extra)
    return dict(lr=cfg.lr, betas=tuple(cfg.betas), **extra)


def param_groups(model: nn.Module, weight_decay: float, no_decay_1d: bool = True) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and (if ``no_decay_1d``) undecayed biases, norms and embeddings.

    Decaying LayerNorm gains and biases hurts ViTs; timm and nanoGPT both exempt tensors with ndim <= 1,
    and timm models list extra exemptions (position embeddings, class token) in ``no_weight_decay()``.
    """
    skip = set(model.no_weight_decay()) if no_decay_1d and hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = no_decay_1d and (p.ndim <= 1 or name in skip or name.split(".")[-1] in skip)
        (no_decay if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


SAM_VARIANTS: dict[str, type[SAM]] = {"sam": SAM, "gsam": GSAM, "looksam": LookSAM}


def build_optimizer(model: nn.Module, cfg: OptimConfig, min_lr_ratio: float = 0.0, fused: bool = False) -> Optimizer:
    """The base optimizer, wrapped in SAM/ASAM (or GSAM / LookSAM) when ``cfg.sam``.

    ``min_lr_ratio`` (the schedule's) is where a ``rho_min`` schedule reaches rho_min; ``fused`` picks torch's
    fused kernels for AdamW / SGD.
    """
    cls = base_optimizer(cfg.name)
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_1d)
    kwargs = base_kwargs(cfg, fused)
    if not cfg.sam:
        return cls(groups, **kwargs)
    extra = {} if cfg.alpha is None else {"alpha": cfg.alpha}
    return SAM_VARIANTS[cfg.variant](groups, cls, rho=cfg.rho, adaptive=cfg.adaptive, eta=cfg.eta, model=model,
                                     rho_min=cfg.rho_min, min_lr_ratio=min_lr_ratio, **extra, **kwargs)


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup from 0, then cosine / linear decay / constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def build_scheduler(optimizer: Optimizer, cfg: ScheduleConfig, steps_per_epoch: int) -> LambdaLR:
    """A per-step LambdaLR; stepping it once per optimizer step keeps resume exact (its state is the step count)."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg.decay, cfg.min_lr_ratio))
