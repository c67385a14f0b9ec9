"""Active-neuron fraction of MLP hidden layers (Chen et al. ICLR 2022, Fig. 3/4: SAM sparsifies the first blocks).

A hidden unit is *active* on one example and position when its output right after the nonlinearity is > 0.
Forward hooks on timm's activation modules count active and total outputs; they fire once per call, so an
activation instance that a block reuses is counted every time it runs. Counts stay on the device as tensors
until one transfer at the end.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from sharpvision.analysis.core import Batches, advance, analysis_mode, blocks, num_examples, settings

# The hidden nonlinearities, by timm's names, as direct parts of a block (``<index>.``): ``mlp.act`` in ViT and
# ConvNeXt, ``mlp_tokens.act`` / ``mlp_channels.act`` in Mixer, ``act1``/``act2``/... in ResNet, and
# ``norm1.act``... for ResNetV2's pre-activation norms. SE or attention sub-modules' own ``act`` do not match.
_HIDDEN_ACT = re.compile(r"\.\d+\.(?:(?:mlp\w*|norm\d*)\.)?act\d*$")


def _hidden_activations(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Module name -> (block key of :func:`core.blocks`, module) for every hidden nonlinearity inside a block."""
    block_keys = [k for k in blocks(model) if k not in ("stem", "head")]
    found = {}
    for name, module in model.named_modules():
        key = next((k for k in block_keys if name.startswith(k + ".")), None)
        if key is not None and _HIDDEN_ACT.search(name) and not isinstance(module, nn.Identity):
            found[name] = (key, module)
    if not found:
        raise ValueError(f"{type(model).__name__} has no recognised MLP/ReLU activation module inside a block "
                         "(expected timm's blocks.N.mlp.act, blocks.N.mlp_tokens.act, layerN.M.actK or "
                         "stages.N.blocks.M.mlp.act)")
    return found


def active_neuron_fraction(model: nn.Module, data: Batches, mode: str = "eval") -> dict[str, Any]:
    """Fraction of hidden activations > 0 per layer, per block and overall, over every example and position.

    Block and overall fractions pool all counted outputs (a Mixer block's token- and channel-mixing MLPs weigh
    by their number of outputs), so they are the fraction of *all* the block's hidden activations that fire.
    """
    acts = _hidden_activations(model)
    device = next(model.parameters()).device
    active = {name: torch.zeros((), dtype=torch.long, device=device) for name in acts}
    total = dict.fromkeys(acts, 0)

    def counter(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            active[name] += (output > 0).sum()
            total[name] += output.numel()
        return hook

    handles = [module.register_forward_hook(counter(name)) for name, (_, module) in acts.items()]
    try:
        with analysis_mode(model, mode), torch.no_grad():
            for x, _ in data:
                model(x)
                advance()
    finally:
        for handle in handles:
            handle.remove()

    counts = dict(zip(active, torch.stack(list(active.values())).tolist()))
    per_block: dict[str, list[int]] = {}
    for name, (key, _) in acts.items():
        pooled = per_block.setdefault(key, [0, 0])
        pooled[0] += counts[name]
        pooled[1] += total[name]
    return {
        "per_block": {key: a / t for key, (a, t) in per_block.items()},
        "per_layer": {name: counts[name] / total[name] for name in acts},
        "overall": sum(counts.values()) / sum(total.values()),
        "n": num_examples(data),
        "settings": settings(n=num_examples(data), mode=mode),
    }


def unit_activity(model: nn.Module, data: Batches, units: dict[str, tuple[str, int]], mode: str = "eval"
                  ) -> dict[str, torch.Tensor]:
    """Per hidden unit, the fraction of examples and positions where it is active (> 0): the ranking
    ``sharpvision prune --by activity`` cuts by. ``units`` maps a width's name to (the module whose outputs are its
    units, the dimension they sit on), as :func:`sharpvision.models.prune.prunable` gives them. Averaged over a
    width's units, it is :func:`active_neuron_fraction`'s per-layer figure."""
    device = next(model.parameters()).device
    active: dict[str, torch.Tensor] = {}
    total = dict.fromkeys(units, 0)

    def counter(name: str, dim: int):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            fired = (output > 0).movedim(dim, -1).flatten(0, -2).sum(0)
            active[name] = active.get(name, torch.zeros_like(fired)) + fired
            total[name] += output.numel() // output.shape[dim]
        return hook

    handles = [model.get_submodule(act).register_forward_hook(counter(name, dim)) for name, (act, dim) in units.items()]
    try:
        with analysis_mode(model, mode), torch.no_grad():
            for x, _ in data:
                model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(units) - set(active))
    if missing:
        raise ValueError(f"{', '.join(missing)}: the activation never ran in a forward pass (shared module?)")
    return {name: (active[name].double() / total[name]).float().cpu() for name in units}
