"""Loss-geometry analysis: curvature, NTK, landscapes, flatness, sparsity, attention (Chen et al. ICLR 2022)."""

from sharpvision.analysis.core import (
    analysis_mode,
    blocks,
    hvp_operator,
    in_dtype,
    mean_loss,
    sample_batches,
    select_params,
)

__all__ = ["analysis_mode", "blocks", "hvp_operator", "in_dtype", "mean_loss", "sample_batches", "select_params"]
