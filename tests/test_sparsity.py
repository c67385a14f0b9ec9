"""Active-neuron fractions against networks with known activations, on every micro model; per-block weight norms."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Mlp
from torch import nn

from sharpvision import models
from sharpvision.analysis.core import blocks
from sharpvision.analysis.norms import weight_norms
from sharpvision.analysis.sparsity import active_neuron_fraction

MICRO_BLOCKS = {"vit_micro": [f"blocks.{i}" for i in range(4)], "mixer_micro": [f"blocks.{i}" for i in range(4)],
                "resnet_micro": [f"layer{i}" for i in range(1, 5)], "convnext_micro": [f"stages.{i}" for i in range(4)]}


def fc1(weights: list[float]) -> nn.Linear:
    """A 1 -> len(weights) layer without bias: on a positive input, exactly the positive weights give units > 0."""
    layer = nn.Linear(1, len(weights), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights).unsqueeze(1))
    return layer


class MlpBlock(nn.Module):
    """A timm ``Mlp`` with zero output layer inside a residual: every block sees the network's input."""

    def __init__(self, weights: list[float], act: type[nn.Module]) -> None:
        super().__init__()
        self.mlp = Mlp(1, len(weights), act_layer=act)
        self.mlp.fc1 = fc1(weights)
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class ReusedAct(nn.Module):
    """Calls one ReLU instance twice, on x (3 of 4 units > 0) and on -x (1 of 4), as timm blocks may."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = fc1([1.0, -1.0, 2.0, 3.0])
        self.act1 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.fc(x)) + self.act1(self.fc(-x))


class KnownNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(MlpBlock([1.0, -1.0, 2.0, 3.0], nn.ReLU),
                                    MlpBlock([1.0, -1.0, -2.0, -3.0], nn.GELU))
        self.layer1 = nn.Sequential(ReusedAct())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.blocks(x))


def positive_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two batches of strictly positive [B, tokens, 1] inputs."""
    return [(torch.rand(b, 5, 1) + 0.1, torch.zeros(b, dtype=torch.long)) for b in (3, 2)]


def hooks_left(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]


def test_known_fractions_and_each_call_counted() -> None:
    model = KnownNet()
    result = active_neuron_fraction(model, positive_batches())
    assert result["per_layer"] == {"blocks.0.mlp.act": 0.75, "blocks.1.mlp.act": 0.25, "layer1.0.act1": 0.5}
    assert result["per_block"] == {"blocks.0": 0.75, "blocks.1": 0.25, "layer1": 0.5}
    assert result["overall"] == 0.5  # (75 + 25 + 100 active) / 400: act1 ran twice
    assert result["n"] == 5 and result["settings"] == {"n": 5, "mode": "eval"}
    assert not hooks_left(model)


def test_model_without_hidden_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="Sequential has no recognised"):
        active_neuron_fraction(nn.Sequential(nn.Linear(2, 2)), [(torch.zeros(1, 2), torch.zeros(1))])


@pytest.mark.parametrize("name", list(MICRO_BLOCKS))
def test_micro_models(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=28, in_chans=1).train()
    data = [(torch.randn(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))]
    result = active_neuron_fraction(model, data)
    assert list(result["per_block"]) == MICRO_BLOCKS[name]
    assert all(0.0 < f < 1.0 for f in [*result["per_block"].values(), *result["per_layer"].values()])
    if name == "mixer_micro":  # token- and channel-mixing MLPs are both reported
        assert {"blocks.0.mlp_tokens.act", "blocks.0.mlp_channels.act"} <= set(result["per_layer"])
    assert not hooks_left(model) and model.training


def test_weight_norms_add_in_squares() -> None:
    model = models.create("resnet_micro", num_classes=10, img_size=28, in_chans=1)
    norms = weight_norms(model)
    assert list(norms["per_block"]) == list(blocks(model))
    assert sum(n ** 2 for n in norms["per_block"].values()) == pytest.approx(norms["total"] ** 2, rel=1e-12)
    assert norms["per_param"]["fc.weight"] == pytest.approx(model.fc.weight.norm().item(), rel=1e-6)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert norms["total"] == pytest.approx(flat.norm().item(), rel=1e-5)
