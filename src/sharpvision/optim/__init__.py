"""SAM and its variants, base optimizers by name, and schedules."""

from sharpvision.optim.factory import (
    SAM_VARIANTS,
    base_optimizer,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)
from sharpvision.optim.sam import SAM
from sharpvision.optim.variants import GSAM, LookSAM

__all__ = ["GSAM", "SAM", "SAM_VARIANTS", "LookSAM", "base_optimizer", "build_optimizer", "build_scheduler",
           "lr_factor", "param_groups"]
