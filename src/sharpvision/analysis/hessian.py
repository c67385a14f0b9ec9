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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sharpvision.analysis.core import (
    Batches,
    LossFn,
    Vector,
    advance,
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
    """A Lanczos run: the tridiagonal T (float64), the number of products, whether it stopped before ``iters``,
    and the top ``k`` Ritz values after each product (descending: how the estimate converged)."""

    alpha: list[float]
    beta: list[float]
    matvecs: int
    converged: bool
    history: list[list[float]] = field(default_factory=list)

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
    the Krylov space becomes invariant (T's eigenvalues are then exact), or, with ``tol``, when either of two rules
    says each of the top ``k`` Ritz values is within ``tol * |theta|`` of its eigenvalue.

    The first rule: the Ritz value moved by at most that much over the last two steps. With full
    re-orthogonalisation T_m is a leading principal submatrix of T_{m+1}, so (Cauchy interlacing) the i-th largest
    Ritz value never decreases from one step to the next and never exceeds the i-th largest eigenvalue: its error
    falls monotonically, and by the Kaniel-Paige-Saad bound at least geometrically. So the rule cannot stop late:
    once theta is within tol of its eigenvalue it can move by at most that much more, and the run ends at most two
    products after the first that reached the accuracy. It stops accurately when the error at least halves over
    two steps (then what is left is at most the last two steps' change).

    The second rule (:func:`_kato_temple`) needs no history, so it can stop at the first product that reaches the
    accuracy: the error of a Ritz value is at most residual^2 / gap (Kato-Temple), where the residual
    ``||H y - theta y||`` is beta_m times the last component of T's eigenvector (free) and the gap is the distance to
    the next Ritz value's residual interval. The bound holds when nothing lies between the neighbour's interval and
    theta; the next Ritz value is only a lower bound of the next eigenvalue (interlacing), which is why its residual
    is added to it: while it has not settled, its residual is large and the gap small, and the rule waits. Where the
    top eigenvalue stands apart it stops first: on the trained ``resnet_micro`` and the 256 images that
    ``benchmarks/hessian_peers.py`` uses, after 4 products (error 0.06%, bound 0.09%) where the two-step rule waits
    for 6, and on ``vit_micro`` at init after 5 at tol 1e-2 (error 0.11%) where it waits for 6; where convergence is
    slow (a Mixer) the two-step rule stops first, and Kato-Temple alone ran past the first product that reached the
    accuracy plus two. The plain residual bound (ARPACK's ``||H y - theta y|| <= tol |theta|``) is the same
    residual unsquared: from the same start it took 9 and 17 products on the micro ViT and ResNet where the two-step
    rule takes 8 and 15 (``benchmarks/hvp_levers.py``).

    What no rule that watches one Krylov sequence can see is a top eigenvalue whose eigenvector the start vector
    barely touches, next to a second one (the Ritz value then settles near the second and moves again later);
    starting from the gradient (:func:`hessian_eigenvalues`) makes that rarer.
    """
    iters = min(iters, sum(t.numel() for t in start))
    basis = _Basis(start, iters)
    basis.append(_scaled(start, 1 / norm(start)))
    floor = _breakdown_floor(start)
    run = Lanczos([], [], 0, False)
    history = run.history
    scale = 0.0
    while True:
        v = basis[len(run.alpha)]
        w = matvec(v)
        a = dot(w, v)
        w = basis.project_out(w)
        a, b = torch.stack([a, norm(w)]).tolist()  # one device sync per product
        run.alpha.append(a)
        scale = max(scale, abs(a), b)
        history.append(run.ritz_values()[-k:].flip(0).tolist())
        if tol is not None:
            if len(history) >= 3 and len(history[-3]) == k:
                run.converged = all(new - old <= tol * abs(new) for new, old in zip(history[-1], history[-3]))
            values, vectors = torch.linalg.eigh(run.tridiagonal())
            run.converged = run.converged or _kato_temple(values, b * vectors[-1].abs(), k, tol)
        run.converged = run.converged or b <= floor * scale
        if run.converged or len(run.alpha) == iters:
            run.matvecs = len(run.alpha)
            return run
        run.beta.append(b)
        basis.append(_scaled(w, 1 / b))


def _kato_temple(values: torch.Tensor, residuals: torch.Tensor, k: int, tol: float) -> bool:
    """Whether each of the top ``k`` Ritz values is within ``tol`` (relative) of its eigenvalue by the Kato-Temple
    bound, with the neighbouring eigenvalues placed at the far ends of their Ritz values' residual intervals.

    ``values``: the Ritz values (ascending); ``residuals``: ``||H y_i - theta_i y_i||`` of their Ritz vectors
    (beta_m times the last component of T's eigenvector, no product needed). Kato-Temple: if theta is the Rayleigh
    quotient of a unit vector with residual r and (alpha, beta) contains theta and exactly one eigenvalue lambda,
    then theta - r^2 / (beta - theta) <= lambda <= theta + r^2 / (theta - alpha). The neighbouring eigenvalues are
    placed at theta_below + r_below and theta_above - r_above (each Ritz value has an eigenvalue within its residual).
    Needs k + 1 Ritz values, and none when the intervals overlap.
    """
    m = len(values)
    if m <= k:
        return False
    for j in range(m - k, m):
        theta, r = values[j], residuals[j]
        gap = theta - (values[j - 1] + residuals[j - 1])
        if j + 1 < m:
            gap = torch.minimum(gap, values[j + 1] - residuals[j + 1] - theta)
        if gap <= 0 or r * r > tol * abs(theta) * gap:
            return False
    return True


class _Operator:
    """H v over the selected parameters of a prepared model, counting products (the cost unit here)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Batches, names: Sequence[str] | None,
                 keep_graph: bool | None) -> None:
        _, params = select_params(model, names)
        self.template = [p.detach() for p in params]
        self.dim = sum(p.numel() for p in params)
        self.matvecs = 0
        self.hvp = hvp_operator(model, loss_fn, data, params, keep_graph)

    def __call__(self, v: Vector) -> Vector:
        self.matvecs += 1
        out = self.hvp(v)
        advance()
        return out


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


def _start(op: _Operator, generator: torch.Generator) -> Vector:
    """The unit gradient plus a unit seeded Gaussian: where the top eigenvectors are, and everywhere else.

    The gradient of a classification loss lies mostly in the span of the Hessian's top eigenvectors (Gur-Ari et
    al. 2018), so Lanczos from it reaches a given accuracy in fewer products (``benchmarks/hvp_levers.py``:
    about a third fewer on the micro models); the Gaussian half keeps every eigenvector within reach where the
    gradient vanishes or misses one. With a kept graph the gradient costs nothing; streamed, one backward pass.
    """
    noise = _random(op.template, generator, "gaussian")
    gradient = op.hvp.gradient()
    size, spread = torch.stack([norm(gradient), norm(noise)]).tolist()
    if not math.isfinite(size) or size == 0.0:
        return noise
    return [g / size + z / spread for g, z in zip(gradient, noise)]


def _power(op: _Operator, k: int, iters: int, tol: float, generator: torch.Generator) -> tuple[list[float], bool]:
    """Power iteration with deflation by projection (PyHessian's rule): the eigenvalues of largest magnitude."""
    found = _Basis(op.template, k)
    values, converged = [], True
    for i in range(k):
        v, value, done = _start(op, generator) if i == 0 else _random(op.template, generator, "gaussian"), None, False
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
                     seed: int) -> tuple[list[float], bool, list[list[float]]]:
    """The top ``k`` eigenvalues (descending), whether the rule stopped the run, and the estimates after each
    Lanczos step (none for power iteration)."""
    if not 1 <= k <= op.dim:
        raise ValueError(f"k={k} must be in [1, {op.dim}] (the number of parameters analysed)")
    generator = torch.Generator().manual_seed(seed)
    if method == "power":
        return *_power(op, k, iters, tol, generator), []
    run = lanczos(op, _start(op, generator), iters, k=k, tol=tol)
    return run.ritz_values()[-k:].flip(0).tolist(), run.converged, run.history


def _check_eigen(method: str, k: int, iters: int | None, tol: float) -> int:
    """The iteration limit: Lanczos needs steps well beyond k before the k-th Ritz value settles."""
    if method not in EIGEN_METHODS:
        raise ValueError(f"method must be one of {EIGEN_METHODS}, got {method!r}")
    if not 0 < tol < 1:
        raise ValueError(f"tol={tol!r} must be in (0, 1): the relative accuracy asked of the eigenvalues")
    if iters is not None:
        return iters
    return max(50, 3 * k + 20) if method == "lanczos" else 100


def hessian_eigenvalues(model: nn.Module, loss_fn: LossFn, data: Batches, k: int = 1, method: str = "lanczos",
                        iters: int | None = None, tol: float = 1e-3, seed: int = 0, mode: str = "eval",
                        dtype: torch.dtype = torch.float32,
                        param_names: Sequence[str] | None = None, keep_graph: bool | None = None) -> dict[str, Any]:
    """The ``k`` largest eigenvalues of the Hessian of the mean loss over ``data``, descending, each to the relative
    accuracy ``tol`` (:func:`lanczos` says how the run knows; ``estimates``: the top ``k`` after each product).

    ``lanczos`` gives the largest algebraic eigenvalues; ``power`` (for parity with PyHessian) the largest in
    magnitude, which are the same unless a negative eigenvalue outweighs them. ``param_names`` restricts the
    Hessian to those parameters (the others are held fixed). ``keep_graph``: see :func:`core.hvp_operator`
    (faster products for more memory; default: when ``data`` is one batch).
    """
    iters = _check_eigen(method, k, iters, tol)
    with _prepared(model, data, mode, dtype) as (model, data):
        op = _Operator(model, loss_fn, data, param_names, keep_graph)
        values, converged, history = _top_eigenvalues(op, method, k, iters, tol, seed)
    return {"eigenvalues": values, "matvecs": op.matvecs, "converged": converged, "estimates": history,
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
    iters = _check_eigen(method, 1, iters, tol)
    wanted = None if param_names is None else set(param_names)
    top, converged, matvecs, dim = {}, {}, 0, 0
    with _prepared(model, data, mode, dtype) as (model, data):
        for block, names in blocks(model).items():
            chosen = [n for n in names if wanted is None or n in wanted]
            if chosen:
                op = _Operator(model, loss_fn, data, chosen, keep_graph)
                values, converged[block], _ = _top_eigenvalues(op, method, 1, iters, tol, seed)
                top[block] = values[0]
                matvecs, dim = matvecs + op.matvecs, dim + op.dim
    return {"blocks": top, "converged": converged, "matvecs": matvecs,
            "settings": _record(data, dim, seed, mode, dtype, keep_graph, method=method, iterations=iters, tol=tol)}


def hessian_trace(model: nn.Module, loss_fn: LossFn, data: Batches, method: str = "hutchinson", samples: int = 100,
                  seed: int = 0, mode: str = "eval", dtype: torch.dtype = torch.float32,
                  param_names: Sequence[str] | None = None, keep_graph: bool | None = None,
                  digits: int | None = None) -> dict[str, Any]:
    """Trace of the Hessian from at most ``samples`` Hessian-vector products with Rademacher probes.

    ``hutch++`` (Meyer et al. 2021) spends a third of them on a sketch S, a third on trace(Q^T H Q) with
    Q = orth(H S), and the rest on Hutchinson over the deflated remainder (I - QQ^T) G: the top of the spectrum
    is then counted exactly and only the small eigenvalues add variance. ``stderr`` is the Hutchinson part's
    standard error (std of the per-probe estimates / sqrt(probes)). ``digits``: stop the probes early, once the
    standard error is at most half a unit of that many significant digits of the estimate (so the estimate
    rounded to ``digits`` is good to about one standard error), after at least 4 probes; ``digits_reached`` says
    whether it got there within ``samples``.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    if digits is not None and digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
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
        exact = float(sum(dot(v, op(v)) for v in q))
        estimates: list[float] = []
        reached = False
        while len(estimates) < probes and not reached:
            z = q.project_out(_random(op.template, generator, "rademacher"))
            estimates.append(dot(z, op(z)).item())
            trace, stderr = _hutchinson(exact, estimates)
            reached = digits is not None and len(estimates) >= 4 and stderr <= _half_unit(trace, digits)
    return {"trace": trace, "stderr": stderr, "samples": samples, "matvecs": op.matvecs, "probes": len(estimates),
            **({"digits": digits, "digits_reached": reached} if digits is not None else {}),
            "settings": _record(data, op.dim, seed, mode, dtype, keep_graph, method=method, samples=samples,
                                digits=digits)}


def _hutchinson(exact: float, estimates: list[float]) -> tuple[float, float]:
    """The trace (the exact part plus the probes' mean) and the standard error of the mean."""
    values = torch.tensor(estimates, dtype=torch.float64)
    spread = values.std().item() if len(values) > 1 else math.inf
    return exact + values.mean().item(), spread / math.sqrt(len(values))


def _half_unit(value: float, digits: int) -> float:
    """Half a unit in the last of ``digits`` significant digits of ``value`` (340 at 2 digits: 5)."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - digits + 1)


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
