"""Loss landscapes: filter normalisation, exact centre and endpoints, a known parabola, weights restored bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpvision.analysis.core import mean_loss
from sharpvision.analysis.landscape import loss_landscape, loss_landscape_1d, loss_landscape_2d, random_direction


def small_cnn(seed: int) -> nn.Module:
    """Conv + BatchNorm + linear, with BN statistics away from their initial (0, 1)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    model[1].num_batches_tracked.fill_(7 + seed)
    return model


def batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (5, 3)]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bitwise(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def eval_loss(model: nn.Module, data: list) -> float:
    model.eval()
    with torch.no_grad():
        return float(mean_loss(model, F.cross_entropy, data))


def test_filter_normalization() -> None:
    model = small_cnn(0)
    params = list(model.parameters())
    direction = random_direction(model, seed=3)
    for d, w in zip(direction, params):
        assert d.shape == w.shape
        if w.ndim >= 2:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))
        else:
            assert torch.equal(d, torch.zeros_like(d))  # biases and BN weights ignored (biasbn)
    for d, w in zip(random_direction(model, seed=3, ignore=None), params):
        torch.testing.assert_close(d.norm() if w.ndim == 1 else d.flatten(1).norm(dim=1),
                                   w.detach().norm() if w.ndim == 1 else w.detach().flatten(1).norm(dim=1))
    for d, w in zip(random_direction(model, seed=3, normalization="layer"), params):
        if w.ndim >= 2:
            torch.testing.assert_close(d.norm(), w.detach().norm())
    again, other = random_direction(model, seed=3), random_direction(model, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(direction, again))
    assert not torch.equal(direction[0], other[0])


def test_2d_center_is_the_model_loss_and_weights_are_restored() -> None:
    model, data = small_cnn(0), batches()
    model.train()
    saved = snapshot(model)
    result = loss_landscape_2d(model, F.cross_entropy, data, steps=3, span=(-0.5, 0.5))
    assert_bitwise(model, saved)
    assert model.training
    expected = eval_loss(model, data)
    assert result["alphas"] == result["betas"] == [-0.5, 0.0, 0.5]
    assert abs(result["center_loss"] - expected) < 1e-6
    assert abs(result["loss"][1][1] - expected) < 1e-6
    assert len(result["loss"]) == len(result["accuracy"]) == 3 and all(len(r) == 3 for r in result["loss"])
    assert result["mean_loss"] == pytest.approx(sum(x for row in result["loss"] for x in row) / 9)
    assert all(0 <= a <= 1 for row in result["accuracy"] for a in row)
    assert result["settings"]["seeds"] == [0, 1] and result["settings"]["n"] == 8
    json.dumps(result)


def test_2d_train_mode_restores_batchnorm_statistics() -> None:
    model, data = small_cnn(0), batches()
    saved = snapshot(model)
    loss_landscape_2d(model, F.cross_entropy, data, steps=2, mode="train")
    assert_bitwise(model, saved)


def test_1d_random_direction_is_the_seeded_filter_normalized_one() -> None:
    model, data = small_cnn(1), batches()
    default = loss_landscape_1d(model, F.cross_entropy, data, steps=5, seed=2)
    given = loss_landscape_1d(model, F.cross_entropy, data, direction=random_direction(model, 2), steps=5)
    assert default["loss"] == given["loss"]
    assert abs(default["loss"][2] - eval_loss(model, data)) < 1e-6
    assert default["settings"]["direction"] == "random" and given["settings"]["direction"] == "given"


def test_1d_interpolation_endpoints_are_the_two_models() -> None:
    a, b, data = small_cnn(0), small_cnn(1), batches()
    saved_a, saved_b = snapshot(a), snapshot(b)
    result = loss_landscape_1d(a, F.cross_entropy, data, other=b, steps=5, span=(-0.5, 1.5))
    assert result["alphas"] == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert_bitwise(a, saved_a)
    assert_bitwise(b, saved_b)
    loss_a, loss_b = eval_loss(a, data), eval_loss(b, data)
    assert abs(loss_a - loss_b) > 1e-3
    assert abs(result["loss"][1] - loss_a) < 1e-6
    assert abs(result["loss"][3] - loss_b) < 1e-6  # BN statistics interpolated too
    with pytest.raises(ValueError, match="same architecture"):
        loss_landscape_1d(a, F.cross_entropy, data, other=nn.Linear(2, 2))


class Quadratic(nn.Module):
    """L(w) = 1/2 (w - c)^T A (w - c), returned per example so that loss_fn can average it."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("c", c)
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w - self.c
        return (0.5 * d @ self.a @ d).expand(len(x), 1)


def test_quadratic_landscape_is_the_known_parabola() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    a, c, w = m @ m.T + torch.eye(4, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64), \
        torch.randn(4, generator=g, dtype=torch.float64)
    d = torch.randn(4, generator=g, dtype=torch.float64)
    model = Quadratic(a, c, w)
    data = [(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))]
    result = loss_landscape_1d(model, lambda out, y: out.mean(), data, direction=[d], steps=9, span=(-2, 2))
    for alpha, loss in zip(result["alphas"], result["loss"]):
        expected = 0.5 * (w - c) @ a @ (w - c) + alpha * d @ a @ (w - c) + 0.5 * alpha**2 * d @ a @ d
        assert loss == pytest.approx(expected.item(), rel=1e-12)
    assert torch.equal(model.w.detach(), w)


def test_weights_restored_when_the_loss_fails() -> None:
    model, data = small_cnn(0), batches()
    saved = snapshot(model)
    calls = []

    def failing(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return F.cross_entropy(logits, y)

    with pytest.raises(RuntimeError, match="boom"):
        loss_landscape_2d(model, failing, data, steps=3)
    assert_bitwise(model, saved)


def test_loss_landscape_dispatches_on_dims_and_refuses_others() -> None:
    model, data = small_cnn(0), batches()
    assert loss_landscape(model, F.cross_entropy, data, dims=2, steps=3) == loss_landscape_2d(model, F.cross_entropy,
                                                                                              data, steps=3)
    assert loss_landscape(model, F.cross_entropy, data, dims=1, steps=3)["alphas"] == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="dims must be 1 or 2, got 3"):
        loss_landscape(model, F.cross_entropy, data, dims=3)
