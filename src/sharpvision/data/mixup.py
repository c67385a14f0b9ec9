"""Batch-level Mixup / CutMix for the "strong" recipe, via timm's ``Mixup``."""

from __future__ import annotations

import numpy as np
import torch
from timm.data import Mixup

from sharpvision.config import ConfigError, DataConfig


class TorchSeededMixup:
    """timm's Mixup with its NumPy draws seeded from torch's RNG, so torch's RNG state alone fixes a run.

    timm draws lambda and the CutMix box from NumPy's global RNG; each call reseeds it from one torch draw
    and restores NumPy's previous state afterwards. Like timm's, it mixes ``x`` in place, needs an even batch
    and returns soft targets (rows sum to 1, label smoothing included).
    """

    def __init__(self, mixup: Mixup) -> None:
        self.mixup = mixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = np.random.get_state()
        np.random.seed(int(torch.randint(0, 2**32, ())))
        try:
            return self.mixup(x, target)
        finally:
            np.random.set_state(state)


def build_mixup(cfg: DataConfig, num_classes: int, label_smoothing: float) -> TorchSeededMixup | None:
    """The batch mixer for ``augment == "strong"`` with mixup or cutmix > 0, else None (smooth in the loss then)."""
    if cfg.augment != "strong" or (cfg.mixup == 0 and cfg.cutmix == 0):
        return None
    if cfg.batch_size % 2:
        raise ConfigError(f"data.batch_size: {cfg.batch_size} must be even with Mixup/CutMix (timm mixes pairs)")
    return TorchSeededMixup(Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=label_smoothing,
                                  num_classes=num_classes))
