"""SAM and its variants, base optimizers by name, and schedules."""

from sharpvision.optim.factory import (
    SAM_VARIANTS,
    base_optimizer,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)
from sharpvision.optim.sam import SAM, frozen_bn_stats, replay_rng
from sharpvision.optim.variants import GSAM, LookSAM

__all__ = ["GSAM", "SAM", "SAM_VARIANTS", "LookSAM", "base_optimizer", "build_optimizer", "build_scheduler",
           "frozen_bn_stats", "lr_factor", "param_groups", "replay_rng"]
