"""Curvature of the training loss through Hessian-vector products: top eigenvalues (Chen et al. ICLR 2022,
Table 1: lambda_max), per-block top eigenvalues, the trace and the spectral density.

Nothing here forms the Hessian: every method only calls ``v -> H v`` (:func:`~sharpvision.analysis.core.hvp_operator`)
and keeps vectors as lists of per-parameter tensors on the model's device, so the cost is a number of
Hessian-vector products (reported as ``matvecs``) and the memory a few (Lanczos: ``iters``) parameter copies.
Random vectors are drawn on the CPU from a seeded generator, so a seed gives the same probes on every device
and in every dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sharpvision.analysis.core import (
    Batches,
    LossFn,
    Vector,
    analysis_mode,
    blocks,
    dot,
    hvp_operator,
    in_dtype,
    keeps_graph,
    norm,
    num_examples,
    select_params,
    settings,
)

EIGEN_METHODS = ("lanczos", "power")
TRACE_METHODS = ("hutchinson", "hutch++")


class _Basis:
    """Orthonormal vectors kept as rows of one matrix per parameter, so projecting onto all of them is one
    matrix-vector product per parameter, without flattening the model into a single vector."""

    def __init__(self, template: Vector, capacity: int) -> None:
        self.rows = [t.new_empty(capacity, t.numel()) for t in template]
        self.shapes = [t.shape for t in template]
        self.capacity, self.size = capacity, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Vector:
        return [r[i].view(s) for r, s in zip(self.rows, self.shapes)]

    def __iter__(self) -> Iterator[Vector]:
        return (self[i] for i in range(self.size))

    def append(self, v: Vector) -> None:
        for r, x in zip(self.rows, v):
            r[self.size].copy_(x.reshape(-1))
        self.size += 1

    def project_out(self, w: Vector) -> Vector:
        """``w`` minus its component in the span, done twice: one classical Gram-Schmidt pass leaves errors of
        order eps * cond; the second brings them to working precision ("twice is enough", Parlett)."""
        for _ in range(2):
            c = sum(r[:self.size] @ x.reshape(-1) for r, x in zip(self.rows, w))
            w = [x - (c @ r[:self.size]).view_as(x) for r, x in zip(self.rows, w)]
        return w


def _scaled(v: Vector, factor: float | torch.Tensor) -> Vector:
    return [x * factor for x in v]


def _random(template: Vector, generator: torch.Generator, kind: str) -> Vector:
    """Rademacher or Gaussian vector shaped like ``template``, drawn on the CPU (in float64 for Gaussians) so the
    same seed gives the same direction on every device and in every dtype."""
    out = []
    for t in template:
        if kind == "rademacher":
            x = torch.randint(0, 2, t.shape, generator=generator).mul_(2).sub_(1)
        else:
            x = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        out.append(x.to(device=t.device, dtype=t.dtype))
    return out


def _breakdown_floor(v: Vector) -> float:
    """Relative size below which a new direction is rounding noise (sqrt(eps) of the working dtype)."""
    return math.sqrt(torch.finfo(v[0].dtype).eps)


@dataclass
class Lanczos:
    """A Lanczos run: the tridiagonal T (float64), the number of products and whether it stopped before ``iters``."""

    alpha: list[float]
    beta: list[float]
    matvecs: int
    converged: bool

    def tridiagonal(self) -> torch.Tensor:
        a = torch.tensor(self.alpha, dtype=torch.float64)
        b = torch.tensor(self.beta, dtype=torch.float64)
        return torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)

    def ritz_values(self) -> torch.Tensor:
        """Eigenvalues of T, ascending: the extreme ones converge to the extreme eigenvalues of H first."""
        return torch.linalg.eigvalsh(self.tridiagonal())

    def quadrature(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss quadrature nodes (Ritz values) and weights (squared first components of T's eigenvectors):
        ``sum_i w_i f(node_i)`` equals ``v^T f(H) v`` for the unit start vector v and any polynomial f of
        degree < 2 * steps, which is what makes stochastic Lanczos quadrature estimate the spectral density."""
        values, vectors = torch.linalg.eigh(self.tridiagonal())
        return values, vectors[0] ** 2


def lanczos(matvec: Callable[[Vector], Vector], start: Vector, iters: int, k: int = 1,
            tol: float | None = None) -> Lanczos:
    """Lanczos from ``start`` with full re-orthogonalisation against every previous Lanczos vector.

    Without it, Lanczos in float32 loses orthogonality within a few dozen steps and reports spurious copies of
    the top eigenvalues (and wrong quadrature weights). Stops after ``iters`` steps (at most the dimension), when
    the Krylov space becomes invariant (T's eigenvalues are then exact), or, with ``tol``, when each of the top
    ``k`` Ritz pairs has a residual ``||H y - theta y||`` below ``tol * |theta|`` (ARPACK's rule: H has an
    eigenvalue that close). Ritz values that merely stop changing are not enough: they can stall for a few steps
    near an interior eigenvalue before the top one is found.
    """
    iters = min(iters, sum(t.numel() for t in start))
    basis = _Basis(start, iters)
    basis.append(_scaled(start, 1 / norm(start)))
    floor = _breakdown_floor(start)
    run = Lanczos([], [], 0, False)
    scale = 0.0
    while True:
        v = basis[len(run.alpha)]
        w = matvec(v)
        a = dot(w, v)
        w = basis.project_out(w)
        a, b = torch.stack([a, norm(w)]).tolist()  # one device sync per product
        run.alpha.append(a)
        scale = max(scale, abs(a), b)
        if tol is not None and len(run.alpha) >= k:
            values, vectors = torch.linalg.eigh(run.tridiagonal())
            residuals = b * vectors[-1, -k:].abs()  # ||H y - theta y|| = beta * |last component of T's eigenvector|
            run.converged = bool((residuals <= tol * values[-k:].abs()).all())
        run.converged = run.converged or b <= floor * scale
        if run.converged or len(run.alpha) == iters:
            run.matvecs = len(run.alpha)
            return run
        run.beta.append(b)
        basis.append(_scaled(w, 1 / b))


class _Operator:
    """H v over the selected parameters of a prepared model, counting products (the cost unit here)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Batches, names: Sequence[str] | None,
                 keep_graph: bool | None) -> None:
        _, params = select_params(model, names)
        self.template = [p.detach() for p in params]
        self.dim = sum(p.numel() for p in params)
        self.matvecs = 0
        self._hvp = hvp_operator(model, loss_fn, data, params, keep_graph)

    def __call__(self, v: Vector) -> Vector:
        self.matvecs += 1
        return self._hvp(v)


@contextmanager
def _prepared(model: nn.Module, data: Batches, mode: str, dtype: torch.dtype) -> Iterator[tuple[nn.Module, Batches]]:
    """The model and data in ``dtype``, in analysis ``mode`` (math attention) for the duration."""
    model, data = in_dtype(model, data, dtype)
    with analysis_mode(model, mode):
        yield model, data


def _record(data: Batches, dim: int, seed: int, mode: str, dtype: torch.dtype, keep_graph: bool | None,
            **extra: Any) -> dict[str, Any]:
    return settings(n=num_examples(data), params=dim, seed=seed, mode=mode, dtype=dtype,
                    keep_graph=keeps_graph(data, keep_graph), **extra)


def _power(op: _Operator, k: int, iters: int, tol: float, generator: torch.Generator) -> tuple[list[float], bool]:
    """Power iteration with deflation by projection (PyHessian's rule): the eigenvalues of largest magnitude."""
    found = _Basis(op.template, k)
    values, converged = [], True
    for _ in range(k):
        v, value, done = _random(op.template, generator, "gaussian"), None, False
        for _ in range(iters):
            v = found.project_out(v)
            v = _scaled(v, 1 / norm(v))
            hv = op(v)
            new, size = torch.stack([dot(hv, v), norm(hv)]).tolist()
            done = size == 0 or (value is not None and abs(new - value) <= tol * abs(new))
            value = new
            if done:
                break
            v = _scaled(hv, 1 / size)
        v = found.project_out(v)
        found.append(_scaled(v, 1 / norm(v)))
        values.append(value)
        converged = converged and done
    return sorted(values, reverse=True), converged


def _top_eigenvalues(op: _Operator, method: str, k: int, iters: int, tol: float,
                     seed: int) -> tuple[list[float], bool]:
    if not 1 <= k <= op.dim:
        raise ValueError(f"k={k} must be in [1, {op.dim}] (the number of parameters analysed)")
    generator = torch.Generator().manual_seed(seed)
    if method == "power":
        return _power(op, k, iters, tol, generator)
    run = lanczos(op, _random(op.template, generator, "gaussian"), iters, k=k, tol=tol)
    return run.ritz_values()[-k:].flip(0).tolist(), run.converged


def _check_eigen(method: str, k: int, iters: int | None) -> int:
    """The iteration limit: Lanczos needs steps well beyond k before the k-th Ritz pair meets the residual rule."""
    if method not in EIGEN_METHODS:
        raise ValueError(f"method must be one of {EIGEN_METHODS}, got {method!r}")
    if iters is not None:
        return iters
    return max(30, 3 * k + 20) if method == "lanczos" else 100


def hessian_eigenvalues(model: nn.Module, loss_fn: LossFn, data: Batches, k: int = 1, method: str = "lanczos",
                        iters: int | None = None, tol: float = 1e-3, seed: int = 0, mode: str = "eval",
                        dtype: torch.dtype = torch.float32,
                        param_names: Sequence[str] | None = None, keep_graph: bool | None = None) -> dict[str, Any]:
    """The ``k`` largest eigenvalues of the Hessian of the mean loss over ``data``, descending.

    ``lanczos`` gives the largest algebraic eigenvalues; ``power`` (for parity with PyHessian) the largest in
    magnitude, which are the same unless a negative eigenvalue outweighs them. ``param_names`` restricts the
    Hessian to those parameters (the others are held fixed). ``keep_graph``: see :func:`core.hvp_operator`
    (faster products for more memory; default: when ``data`` is one batch).
    """
    iters = _check_eigen(method, k, iters)
    with _prepared(model, data, mode, dtype) as (model, data):
        op = _Operator(model, loss_fn, data, param_names, keep_graph)
        values, converged = _top_eigenvalues(op, method, k, iters, tol, seed)
    return {"eigenvalues": values, "matvecs": op.matvecs, "converged": converged,
            "settings": _record(data, op.dim, seed, mode, dtype, keep_graph, method=method, k=k, iterations=iters,
                                tol=tol)}


def hessian_eigenvalues_per_block(model: nn.Module, loss_fn: LossFn, data: Batches, method: str = "lanczos",
                                  iters: int | None = None, tol: float = 1e-3, seed: int = 0, mode: str = "eval",
                                  dtype: torch.dtype = torch.float32,
                                  param_names: Sequence[str] | None = None,
                                  keep_graph: bool | None = None) -> dict[str, Any]:
    """Top eigenvalue of each diagonal block of the Hessian (stem, blocks.0, ..., head; see ``core.blocks``).

    Chen et al. find the sharpest curvature of ViTs and Mixers in the first blocks; each block is measured with
    the rest of the network fixed, from the same seed.
    """
    iters = _check_eigen(method, 1, iters)
    wanted = None if param_names is None else set(param_names)
    top, converged, matvecs, dim = {}, {}, 0, 0
    with _prepared(model, data, mode, dtype) as (model, data):
        for block, names in blocks(model).items():
            chosen = [n for n in names if wanted is None or n in wanted]
            if chosen:
                op = _Operator(model, loss_fn, data, chosen, keep_graph)
                values, converged[block] = _top_eigenvalues(op, method, 1, iters, tol, seed)
                top[block] = values[0]
                matvecs, dim = matvecs + op.matvecs, dim + op.dim
    return {"blocks": top, "converged": converged, "matvecs": matvecs,
            "settings": _record(data, dim, seed, mode, dtype, keep_graph, method=method, iterations=iters, tol=tol)}


def hessian_trace(model: nn.Module, loss_fn: LossFn, data: Batches, method: str = "hutchinson", samples: int = 100,
                  seed: int = 0, mode: str = "eval", dtype: torch.dtype = torch.float32,
                  param_names: Sequence[str] | None = None, keep_graph: bool | None = None) -> dict[str, Any]:
    """Trace of the Hessian from ``samples`` Hessian-vector products with Rademacher probes.

    ``hutch++`` (Meyer et al. 2021) spends a third of them on a sketch S, a third on trace(Q^T H Q) with
    Q = orth(H S), and the rest on Hutchinson over the deflated remainder (I - QQ^T) G: the top of the spectrum
    is then counted exactly and only the small eigenvalues add variance. ``stderr`` is the Hutchinson part's
    standard error (std of the per-probe estimates / sqrt(probes)).
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    sketch = samples // 3 if method == "hutch++" else 0
    probes = samples - 2 * sketch
    if probes < 2 or (method == "hutch++" and sketch < 1):
        raise ValueError(f"{method} needs at least {4 if sketch else 2} samples for a standard error, got {samples}")
    generator = torch.Generator().manual_seed(seed)
    with _prepared(model, data, mode, dtype) as (model, data):
        op = _Operator(model, loss_fn, data, param_names, keep_graph)
        q = _Basis(op.template, min(sketch, op.dim))
        for _ in range(sketch):
            hs = op(_random(op.template, generator, "rademacher"))
            y = q.project_out(hs)
            size, before = torch.stack([norm(y), norm(hs)]).tolist()
            if size > _breakdown_floor(y) * before and len(q) < q.capacity:  # skip directions Q already spans
                q.append(_scaled(y, 1 / size))
        exact = sum(dot(v, op(v)) for v in q)
        residual = [q.project_out(_random(op.template, generator, "rademacher")) for _ in range(probes)]
        estimates = torch.stack([dot(z, op(z)) for z in residual]).double()
        trace = float(exact + estimates.mean())
    return {"trace": trace, "stderr": float(estimates.std() / math.sqrt(probes)), "samples": samples,
            "matvecs": op.matvecs,
            "settings": _record(data, op.dim, seed, mode, dtype, keep_graph, method=method, samples=samples)}


def hessian_density(model: nn.Module, loss_fn: LossFn, data: Batches, iters: int = 50, runs: int = 3, seed: int = 0,
                    sigma: float | None = None, grid: int = 200, mode: str = "eval", dtype: torch.dtype = torch.float32,
                    param_names: Sequence[str] | None = None, keep_graph: bool | None = None) -> dict[str, Any]:
    """Spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019, PyHessian).

    Each run is an ``iters``-step Lanczos from a Gaussian vector; its quadrature nodes and weights are a discrete
    measure whose moments match those of the spectrum seen from that vector. The density is their Gaussian
    broadening (``sigma``, default 1% of the spectral range) averaged over runs, on ``grid`` points spanning the
    nodes padded by 10%, normalised to integrate to 1.
    """
    generator = torch.Generator().manual_seed(seed)
    with _prepared(model, data, mode, dtype) as (model, data):
        op = _Operator(model, loss_fn, data, param_names, keep_graph)
        quadratures = [lanczos(op, _random(op.template, generator, "gaussian"), iters).quadrature()
                       for _ in range(runs)]
    nodes = torch.cat([n for n, _ in quadratures])
    lo, hi = nodes.min().item(), nodes.max().item()
    width = hi - lo or abs(hi) or 1.0  # a single node (e.g. a zero Hessian) still gets a visible peak
    sigma = width / 100 if sigma is None else sigma
    t = torch.linspace(lo - 0.1 * width, hi + 0.1 * width, grid, dtype=torch.float64)
    # the Gaussians' 1/(sigma sqrt(2 pi)) and the 1/runs of the average vanish in the normalisation
    density = sum(torch.exp(-0.5 * ((t[:, None] - n) / sigma) ** 2) @ w for n, w in quadratures)
    density = density / torch.trapezoid(density, t)
    return {"grid": t.tolist(), "density": density.tolist(),
            "nodes": [n.tolist() for n, _ in quadratures], "weights": [w.tolist() for _, w in quadratures],
            "matvecs": op.matvecs,
            "settings": _record(data, op.dim, seed, mode, dtype, keep_graph, iterations=iters, runs=runs, sigma=sigma,
                                grid=grid)}
