"""Weight norms per block (Chen et al. ICLR 2022, Table 3: SAM grows the weight norm, most in the first blocks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sharpvision.analysis.core import blocks


def weight_norms(model: nn.Module) -> dict[str, Any]:
    """L2 norm of every trainable parameter, of each :func:`core.blocks` group, and of all of them together.

    A block's norm is that of all its parameters flattened into one vector, so per-block norms add in squares
    to the total; squares are summed in float64 on the device and read back in one transfer.
    """
    table = dict(model.named_parameters())
    groups = blocks(model)
    names = [n for group in groups.values() for n in group]
    squares = torch.stack([table[n].detach().double().pow(2).sum() for n in names]).tolist()
    square = dict(zip(names, squares))
    return {
        "per_block": {key: sum(square[n] for n in group) ** 0.5 for key, group in groups.items()},
        "per_param": {n: s ** 0.5 for n, s in square.items()},
        "total": sum(squares) ** 0.5,
    }
