"""sharpvision.analysis.hessian against the exact Hessian (float64 autograd) of tiny models."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call

from sharpvision import config, models
from sharpvision.analysis.core import Batches, analysis_mode, blocks, hvp_operator, sample_batches, select_params
from sharpvision.analysis.hessian import (
    hessian_density,
    hessian_eigenvalues,
    hessian_eigenvalues_per_block,
    hessian_trace,
    lanczos,
)

Exact = tuple[list[str], list[int], torch.Tensor]  # parameter names, their sizes, the flat Hessian


def batches(shape: tuple[int, ...], sizes: tuple[int, ...], classes: int = 3) -> Batches:
    return [(torch.randn(n, *shape), torch.randint(0, classes, (n,))) for n in sizes]


def exact_hessian(model: nn.Module, data: Batches) -> Exact:
    """Hessian of the cross-entropy over all examples as one batch, w.r.t. the flat parameters, in float64."""
    model = copy.deepcopy(model).double()
    x, y = torch.cat([x for x, _ in data]).double(), torch.cat([y for _, y in data])
    with analysis_mode(model):
        names, params = select_params(model)
        sizes = [p.numel() for p in params]

        def loss(flat: torch.Tensor) -> torch.Tensor:
            weights = {n: w.view_as(p) for n, w, p in zip(names, flat.split(sizes), params)}
            return F.cross_entropy(functional_call(model, weights, (x,)), y)

        flat = torch.cat([p.detach().reshape(-1) for p in params])
        return names, sizes, torch.autograd.functional.hessian(loss, flat, vectorize=True)


def sub_block(exact: Exact, chosen: list[str]) -> torch.Tensor:
    """The diagonal block of the exact Hessian for the parameters ``chosen``."""
    names, sizes, h = exact
    index = torch.cat([torch.arange(s) + o for n, s, o in zip(names, sizes, torch.tensor([0, *sizes]).cumsum(0))
                       if n in chosen])
    return h[index][:, index]


def assert_rel(value: float, expected: float, rel: float) -> None:
    assert value == pytest.approx(expected, rel=rel), f"{value} vs exact {expected}"


@pytest.fixture(scope="module")
def mlp() -> tuple[nn.Module, Batches, Exact]:
    """83 parameters; spectrum from -0.49 to 0.94 (largest in magnitude is positive, as power iteration needs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    data = batches((6,), (5, 7, 4))
    return model, data, exact_hessian(model, data)


@pytest.fixture(scope="module")
def vit() -> tuple[nn.Module, Batches, Exact]:
    """A 691-parameter timm ViT whose most negative eigenvalue outweighs the top one."""
    torch.manual_seed(0)
    model = models.create("vit_micro", num_classes=3, img_size=8, in_chans=1, patch_size=4, depth=1, embed_dim=8,
                          num_heads=2, mlp_ratio=1.0)
    data = batches((1, 8, 8), (6, 3))
    return model, data, exact_hessian(model, data)


def test_hvp_streamed_or_kept_graph_equals_one_batch_and_exact(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, (_, _, h) = mlp
    _, params = select_params(model)
    whole = [(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))]
    operators = {"streamed": hvp_operator(model, F.cross_entropy, data, params),
                 "kept, 3 batches": hvp_operator(model, F.cross_entropy, data, params, keep_graph=True),
                 "one batch (kept by default)": hvp_operator(model, F.cross_entropy, whole, params)}
    for _ in range(2):  # a kept graph serves every later product, with any vector
        v = [torch.randn_like(p) for p in params]
        expected = h @ torch.cat([t.reshape(-1) for t in v]).double()
        for name, op in operators.items():
            flat = torch.cat([t.reshape(-1) for t in op(v)]).double()
            torch.testing.assert_close(flat, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_lanczos_top_eigenvalues(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, exact = mlp
    expected = torch.linalg.eigvalsh(exact[2]).flip(0)
    result = hessian_eigenvalues(model, F.cross_entropy, data, k=3)
    json.dumps(result)
    assert result["converged"] and result["matvecs"] <= result["settings"]["iterations"]
    assert result["settings"]["n"] == 16 and result["settings"]["params"] == 83
    assert result["settings"]["keep_graph"] is False  # three batches stream by default
    for value, exact_value in zip(result["eigenvalues"], expected[:3], strict=True):
        assert_rel(value, exact_value.item(), 0.01)
    head = ["2.weight", "2.bias"]
    restricted = hessian_eigenvalues(model, F.cross_entropy, data, param_names=head)
    assert restricted["settings"]["params"] == 27
    assert_rel(restricted["eigenvalues"][0], torch.linalg.eigvalsh(sub_block(exact, head))[-1].item(), 0.01)


def test_power_iteration_with_deflation(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, exact = mlp
    expected = torch.linalg.eigvalsh(exact[2]).flip(0)
    assert expected[1] > -expected[-1]  # the two largest in magnitude are the two largest
    result = hessian_eigenvalues(model, F.cross_entropy, data, k=2, method="power", tol=1e-7, iters=1000)
    assert result["converged"]
    assert_rel(result["eigenvalues"][0], expected[0].item(), 0.01)
    assert_rel(result["eigenvalues"][1], expected[1].item(), 0.01)


def test_float64_agrees_with_float32(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, exact = mlp
    top = {dtype: hessian_eigenvalues(model, F.cross_entropy, data, tol=1e-7, dtype=dtype)
           for dtype in (torch.float32, torch.float64)}
    assert top[torch.float64]["settings"]["dtype"] == "float64"
    assert_rel(top[torch.float32]["eigenvalues"][0], top[torch.float64]["eigenvalues"][0], 1e-4)
    assert_rel(top[torch.float64]["eigenvalues"][0], torch.linalg.eigvalsh(exact[2])[-1].item(), 1e-8)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float64 ran on a copy


def test_trace_hutchinson_and_hutchpp(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, (_, _, h) = mlp
    trace = h.trace().item()
    # Rademacher probes: Var(z^T H z) = 2 * sum of squared off-diagonal entries
    theory = math.sqrt(2 * (h.square().sum() - h.diagonal().square().sum()).item() / 300)
    plain = hessian_trace(model, F.cross_entropy, data, samples=300)
    assert plain["samples"] == plain["matvecs"] == 300
    assert plain["stderr"] == pytest.approx(theory, rel=0.25)
    assert abs(plain["trace"] - trace) < 3 * plain["stderr"]
    deflated = hessian_trace(model, F.cross_entropy, data, method="hutch++", samples=150)
    assert deflated["matvecs"] == 150 and deflated["stderr"] < theory / 5  # the top of the spectrum is exact
    assert_rel(deflated["trace"], trace, 0.01)
    with pytest.raises(ValueError, match="at least 4"):
        hessian_trace(model, F.cross_entropy, data, method="hutch++", samples=3)


def test_lanczos_quadrature_is_exact_for_low_degree_polynomials() -> None:
    """The SLQ identity behind the density: sum_i w_i node_i^p = v^T A^p v for p < 2 * steps."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    spectrum = torch.linspace(-1.0, 3.0, 30, dtype=torch.float64)
    a = q @ torch.diag(spectrum) @ q.T
    start = torch.randn(30, dtype=torch.float64)
    v = start / start.norm()
    run = lanczos(lambda x: [a @ x[0]], [start], iters=6)
    nodes, weights = run.quadrature()
    assert run.matvecs == 6 and not run.converged
    for p in range(12):
        torch.testing.assert_close((weights * nodes**p).sum(), v @ torch.linalg.matrix_power(a, p) @ v)
    full = lanczos(lambda x: [a @ x[0]], [start], iters=100)  # capped at the dimension: the whole spectrum
    assert full.matvecs == 30
    torch.testing.assert_close(full.ritz_values(), spectrum)


def test_density(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, (_, _, h) = mlp
    spectrum, runs = torch.linalg.eigvalsh(h), 8
    result = hessian_density(model, F.cross_entropy, data, iters=30, runs=runs)
    json.dumps(result)
    grid, density = torch.tensor(result["grid"]), torch.tensor(result["density"])
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0)
    assert len(result["nodes"]) == runs and result["matvecs"] == 30 * runs
    spread = (spectrum[-1] - spectrum[0]).item()
    for nodes, weights in zip(result["nodes"], result["weights"]):
        assert sum(weights) == pytest.approx(1.0)
        assert max(nodes) == pytest.approx(spectrum[-1].item(), rel=0.01)  # extreme Ritz values converge first
        assert min(nodes) == pytest.approx(spectrum[0].item(), abs=0.01 * spread)
    # first moment of each run is u^T H u for a uniform unit u: mean tr(H)/d, variance 2/(d+2) * Var(spectrum)
    d = len(spectrum)
    moments = torch.tensor([sum(w * x for w, x in zip(ws, xs)) for xs, ws in zip(result["nodes"], result["weights"])])
    std = math.sqrt(2 / (d + 2) * spectrum.var(correction=0).item() / runs)
    assert abs(moments.mean().item() - spectrum.mean().item()) < 3 * std
    assert grid[0] < spectrum[0] and grid[-1] > spectrum[-1]  # the grid spans the spectrum with padding
    peak = grid[density.argmax()]
    assert (spectrum - peak).abs().min() < 0.05 * spread  # the density peaks on an eigenvalue cluster


def test_vit_fused_attention_per_block_and_restore(vit: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, exact = vit
    fused = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert fused and all(m.fused_attn for m in fused)  # timm's default, which has no double backward
    model.train()
    spectrum = torch.linalg.eigvalsh(exact[2])
    assert -spectrum[0] > spectrum[-1]  # lambda_max is not the largest in magnitude: Lanczos must still find it
    top = hessian_eigenvalues(model, F.cross_entropy, data)
    assert_rel(top["eigenvalues"][0], spectrum[-1].item(), 0.01)
    result = hessian_eigenvalues_per_block(model, F.cross_entropy, data)
    json.dumps(result)
    groups = blocks(model)
    assert list(result["blocks"]) == ["stem", "blocks.0", "head"] == list(groups)
    for block, names in groups.items():
        assert_rel(result["blocks"][block], torch.linalg.eigvalsh(sub_block(exact, names))[-1].item(), 0.01)
    assert all(m.fused_attn for m in fused) and all(m.training for m in model.modules())


def eigsh_top(model: nn.Module, data: Batches) -> float:
    """The top eigenvalue by SciPy's ARPACK (``eigsh``) on our Hessian-vector product as a LinearOperator."""
    with analysis_mode(model):
        _, params = select_params(model)
        hvp = hvp_operator(model, F.cross_entropy, data, params)
        sizes = [p.numel() for p in params]

        def matvec(v: np.ndarray) -> np.ndarray:
            flat = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))
            out = hvp([t.view_as(p) for t, p in zip(flat.split(sizes), params)])
            return torch.cat([t.reshape(-1) for t in out]).double().numpy()

        op = LinearOperator((sum(sizes),) * 2, matvec=matvec, dtype=np.float64)
        return float(eigsh(op, k=1, which="LA", tol=1e-6, return_eigenvectors=False)[0])


@pytest.fixture(scope="module")
def fmnist() -> torch.utils.data.Dataset:
    from sharpvision.data import build_datasets
    return build_datasets(config.load(TINY, ["data.subset_train=64"]).data).train_plain


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("name", ["vit_micro", "mixer_micro", "resnet_micro", "convnext_micro"])
def test_stopping_rule_stops_at_the_accuracy_asked(name: str, fmnist, one_thread) -> None:
    """At tol 1e-3 the top eigenvalue is within 1e-3 of eigsh, with at most two products more than the fewest
    that reach it from the same start (the run's own estimates: Ritz values only rise towards it)."""
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = models.create(name, num_classes=10, img_size=28, in_chans=1)
        data = sample_batches(fmnist, 12, 12, seed=seed)
        reference = eigsh_top(model, data)
        result = hessian_eigenvalues(model, F.cross_entropy, data, tol=1e-3, seed=seed)
        error = abs(result["eigenvalues"][0] - reference) / abs(reference)
        assert result["converged"] and error <= 1e-3, f"{name} seed {seed}: {error:.1e} from eigsh"
        estimates = [e[0] for e in result["estimates"]]
        assert len(estimates) == result["matvecs"] and estimates[-1] == result["eigenvalues"][0]
        fewest = next(m + 1 for m, e in enumerate(estimates) if abs(e - reference) <= 1e-3 * abs(reference))
        assert result["matvecs"] <= fewest + 2, f"{name} seed {seed}: {result['matvecs']} products, {fewest} reach it"


def test_tolerance_outside_the_unit_interval_is_refused(mlp: tuple[nn.Module, Batches, Exact]) -> None:
    model, data, _ = mlp
    for tol in (0.0, 1.0, -1e-3, 2.0):
        with pytest.raises(ValueError, match=r"tol=.* must be in \(0, 1\)"):
            hessian_eigenvalues(model, F.cross_entropy, data, tol=tol)
