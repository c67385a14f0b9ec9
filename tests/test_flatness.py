"""Average flatness and sharpness against closed forms on quadratics; weights and gradients restored bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpvision.analysis.flatness import average_flatness, sam_sharpness, worst_case_sharpness

F64 = torch.float64


class Quadratic(nn.Module):
    """L(w) = 1/2 (w - c)^T A (w - c), returned per example so that the loss can average it."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("c", c)
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w - self.c
        return (0.5 * d @ self.a @ d).expand(len(x), 1)


def mean_out(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return out.mean()


DATA = [(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))]
A = torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=F64))
W = torch.tensor([0.7, -1.2, 0.4, 2.0], dtype=F64)


def quadratic(c: torch.Tensor | None = None) -> Quadratic:
    return Quadratic(A, W if c is None else c, W)


def loss_at(w: torch.Tensor, c: torch.Tensor) -> float:
    return float(0.5 * (w - c) @ A @ (w - c))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
    model[1].running_mean.uniform_(-0.5, 0.5)
    return model


def cnn_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (4, 4, 2)]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bitwise(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_average_flatness_with_zero_noise_is_the_loss() -> None:
    model, data = small_cnn(), cnn_data()
    result = average_flatness(model, F.cross_entropy, data, sigma=0.0, draws=3)
    assert result["mean_loss_noisy"] == result["loss"] and result["stderr"] == 0.0
    json.dumps(result)


@pytest.mark.parametrize("relative", [False, True])
def test_average_flatness_on_a_quadratic(relative: bool) -> None:
    c = torch.zeros(4, dtype=F64)
    model, sigma = quadratic(c), 0.3
    result = average_flatness(model, mean_out, DATA, sigma=sigma, draws=2000, seed=1, relative=relative)
    variance = sigma**2 * (W.square() if relative else torch.ones(4, dtype=F64))  # per-weight noise variance
    expected = loss_at(W, c) + 0.5 * float((A.diagonal() * variance).sum())  # E[L(w + eps)] = L(w) + tr(A S) / 2
    lo, hi = result["ci95"]
    assert lo <= expected <= hi
    assert result["loss"] == pytest.approx(loss_at(W, c), rel=1e-12)
    assert torch.equal(model.w.detach(), W)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_sharpness_matches_hand_computation(adaptive: bool) -> None:
    c = torch.tensor([0.2, 0.3, -0.1, 1.0], dtype=F64)
    model, rho = quadratic(c), 0.1
    existing = torch.full((4,), 9.0, dtype=F64)
    model.w.grad = existing
    result = sam_sharpness(model, mean_out, DATA, rho=rho, adaptive=adaptive)
    g = A @ (W - c)
    t = W.abs() + 0.01 if adaptive else torch.ones(4, dtype=F64)
    e = rho * t.square() * g / (t * g).norm()
    assert result["sharpness"] == pytest.approx(loss_at(W + e, c) - loss_at(W, c), rel=1e-6)
    assert result["loss"] == pytest.approx(loss_at(W, c), rel=1e-12)
    assert torch.equal(model.w.detach(), W) and model.w.grad is existing


def test_worst_case_sharpness_at_a_minimum_is_rho_squared_lambda_max_over_two() -> None:
    model, rho = quadratic(), 0.2
    result = worst_case_sharpness(model, mean_out, DATA, rho=rho)
    exact = rho**2 * 4.0 / 2
    assert exact * 0.98 <= result["sharpness"] <= exact * (1 + 1e-9)
    assert torch.equal(model.w.detach(), W)


def test_adaptive_worst_case_sharpness_at_a_minimum() -> None:
    model, rho = quadratic(), 0.2
    result = worst_case_sharpness(model, mean_out, DATA, rho=rho, adaptive=True, steps=20)
    t = W.abs() + 0.01  # delta = T u, ||u|| <= rho: the max is rho^2 lambda_max(T A T) / 2
    exact = rho**2 * float(torch.linalg.eigvalsh(t[:, None] * A * t).max()) / 2
    assert exact * 0.98 <= result["sharpness"] <= exact * (1 + 1e-9)


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_is_at_least_sam_on_a_quadratic(adaptive: bool) -> None:
    c = torch.tensor([0.2, 0.3, -0.1, 1.0], dtype=F64)
    model = quadratic(c)
    sam = sam_sharpness(model, mean_out, DATA, rho=0.1, adaptive=adaptive)["sharpness"]
    worst = worst_case_sharpness(model, mean_out, DATA, rho=0.1, adaptive=adaptive)["sharpness"]
    assert sam > 0 and worst >= sam


def test_sharpness_on_a_cnn_restores_weights_and_statistics() -> None:
    model, data = small_cnn(), cnn_data()
    saved = snapshot(model)
    sam = sam_sharpness(model, F.cross_entropy, data, rho=0.05)
    assert_bitwise(model, saved)
    worst = worst_case_sharpness(model, F.cross_entropy, data, rho=0.05, steps=5, mode="train")
    assert_bitwise(model, saved)
    assert worst["steps"] == 5 and worst["settings"]["mode"] == "train"
    worst_eval = worst_case_sharpness(model, F.cross_entropy, data, rho=0.05, steps=5)
    assert worst_eval["loss"] == pytest.approx(sam["loss"], rel=1e-6)
    assert worst_eval["sharpness"] >= sam["sharpness"] > 0
    json.dumps(worst)


def test_m_sharpness_averages_the_per_chunk_worst_cases() -> None:
    model, data = small_cnn(), cnn_data()
    result = worst_case_sharpness(model, F.cross_entropy, data, rho=0.05, steps=3, m=4, seed=5)
    x, y = torch.cat([b for b, _ in data]), torch.cat([t for _, t in data])
    parts = [worst_case_sharpness(model, F.cross_entropy, [(x[s:s + 4], y[s:s + 4])], rho=0.05, steps=3, seed=5 + k)
             for k, s in enumerate(range(0, 10, 4))]
    weights = [0.4, 0.4, 0.2]
    assert result["settings"]["chunks"] == 3
    assert result["max_loss"] == pytest.approx(sum(w * p["max_loss"] for w, p in zip(weights, parts)), rel=1e-12)
    assert result["sharpness"] == pytest.approx(sum(w * p["sharpness"] for w, p in zip(weights, parts)), rel=1e-9)


def test_weights_restored_when_the_loss_fails() -> None:
    model, data = small_cnn(), cnn_data()
    saved = snapshot(model)
    calls = []

    def failing(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("boom")
        return F.cross_entropy(logits, y)

    for measure in (average_flatness, sam_sharpness, worst_case_sharpness):
        calls.clear()
        with pytest.raises(RuntimeError, match="boom"):
            measure(model, failing, data)
        assert_bitwise(model, saved)
        assert all(p.grad is None for p in model.parameters())
