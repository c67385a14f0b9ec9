"""Loss-geometry analysis (Chen et al. ICLR 2022, Table 1 and Figs. 1-5): each piece is a function of
``(model, loss_fn, data)`` (data: a list of (x, y) batches) returning a plain dict with its settings.
Plots live in :mod:`sharpvision.analysis.plots`; ``sharpvision analyze`` runs them on run directories.
"""

from sharpvision.analysis.attention import attention_maps, attention_rollout
from sharpvision.analysis.core import (
    analysis_mode,
    blocks,
    hvp_operator,
    in_dtype,
    mean_loss,
    sample_batches,
    select_params,
)
from sharpvision.analysis.flatness import average_flatness, sam_sharpness, worst_case_sharpness
from sharpvision.analysis.hessian import (
    hessian_density,
    hessian_eigenvalues,
    hessian_eigenvalues_per_block,
    hessian_trace,
    lanczos,
)
from sharpvision.analysis.landscape import loss_landscape, loss_landscape_1d, loss_landscape_2d, random_direction
from sharpvision.analysis.norms import weight_norms
from sharpvision.analysis.ntk import ntk_condition_number, ntk_matrix
from sharpvision.analysis.sparsity import active_neuron_fraction

__all__ = ["active_neuron_fraction", "analysis_mode", "attention_maps", "attention_rollout", "average_flatness",
           "blocks", "hessian_density", "hessian_eigenvalues", "hessian_eigenvalues_per_block", "hessian_trace",
           "hvp_operator", "in_dtype", "lanczos", "loss_landscape", "loss_landscape_1d", "loss_landscape_2d",
           "mean_loss", "ntk_condition_number", "ntk_matrix", "random_direction", "sam_sharpness", "sample_batches",
           "select_params", "weight_norms", "worst_case_sharpness"]
