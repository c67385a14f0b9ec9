"""SAM and its variants, base optimizers by name, and schedules."""

from sharpvision.optim.factory import base_optimizer, build_optimizer, build_scheduler, lr_factor, param_groups
from sharpvision.optim.sam import SAM, frozen_bn_stats, replay_rng

__all__ = ["SAM", "base_optimizer", "build_optimizer", "build_scheduler", "frozen_bn_stats", "lr_factor",
           "param_groups", "replay_rng"]
