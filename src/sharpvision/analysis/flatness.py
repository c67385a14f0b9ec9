"""How flat the minimum is: the loss under Gaussian weight noise (Chen et al. 2022's average flatness L^N_train)
and sharpness, the loss increase under the worst weight perturbation of radius rho (Foret et al. 2021; adaptive:
Kwon et al. 2021, Andriushchenko et al. 2023), first-order as SAM takes it or by projected gradient ascent.

Every function moves the weights in place and restores them bit for bit afterwards, also on error, evaluates under
:func:`core.analysis_mode` (eval by default: BN running statistics, no dropout) and averages the loss over the whole
fixed sample. Gradients are accumulated one batch at a time, so memory stays at one batch's graph.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sharpvision.analysis.core import (
    Batches,
    LossFn,
    Vector,
    advance,
    analysis_mode,
    mean_loss,
    norm,
    num_examples,
    select_params,
    settings,
)
from sharpvision.analysis.landscape import gaussian_like, move_to, preserved_state
from sharpvision.optim import SAM
from sharpvision.passes import replay_rng

_START = 1e-3  # norm of PGA's random start, as a fraction of rho


def average_flatness(model: nn.Module, loss_fn: LossFn, data: Batches, sigma: float = 0.01, draws: int = 20,
                     seed: int = 0, relative: bool = False, mode: str = "eval") -> dict[str, Any]:
    """E_eps[L(w + eps)], eps ~ N(0, sigma^2 I) over the trainable parameters, by Monte Carlo over ``draws`` seeded
    draws with a normal 95% interval (mean +- 1.96 stderr). ``relative=True`` scales each weight's noise by |w|,
    which makes the measure invariant to rescaling a layer (as for a BN-followed layer, whose scale is arbitrary).
    """
    if sigma < 0:
        raise ValueError(f"average flatness sigma must be >= 0, got {sigma}")
    if draws < 2:
        raise ValueError(f"average flatness needs draws >= 2 for its interval, got {draws}")
    names, params = select_params(model)
    generator = torch.Generator().manual_seed(seed)
    with analysis_mode(model, mode), preserved_state(model) as origin, torch.no_grad():
        start = [origin[n] for n in names]
        loss = float(mean_loss(model, loss_fn, data))
        losses = []
        for _ in range(draws):
            noise = gaussian_like(params, generator)
            if relative:
                noise = [e * w.abs() for e, w in zip(noise, start)]
            move_to(params, start, [noise], [sigma])
            losses.append(float(mean_loss(model, loss_fn, data)))
            advance()
    mean = statistics.fmean(losses)
    stderr = statistics.stdev(losses) / math.sqrt(draws)
    return {"mean_loss_noisy": mean, "ci95": [mean - 1.96 * stderr, mean + 1.96 * stderr], "stderr": stderr,
            "draws": draws, "draw_losses": losses, "loss": loss, "sigma": sigma,
            "settings": settings(n=num_examples(data), sigma=sigma, draws=draws, seed=seed, relative=relative,
                                 mode=mode)}


def sam_sharpness(model: nn.Module, loss_fn: LossFn, data: Batches, rho: float = 0.05, adaptive: bool = False,
                  mode: str = "eval", eta: float = 0.01) -> dict[str, Any]:
    """L(w + e) - L(w) at SAM's first-order worst case e = rho g / ||g|| (ASAM: rho T^2 g / ||T g||, T = |w| + eta).

    e is made by :class:`sharpvision.optim.SAM` itself (a zero-lr SGD base never steps), so it is the perturbation
    training takes. Existing ``.grad`` tensors are put back; in train mode both passes see the same random masks.
    """
    names, params = select_params(model)
    grads_before = [p.grad for p in params]
    with analysis_mode(model, mode), preserved_state(model), replay_rng() as rewind:
        try:
            loss, grads = loss_and_grad(model, loss_fn, data, params)
            for p, g in zip(params, grads):
                p.grad = g
            SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive, eta=eta, lr=0.0).perturb()
            rewind()
            with torch.no_grad():
                perturbed = float(mean_loss(model, loss_fn, data))
        finally:
            for p, g in zip(params, grads_before):
                p.grad = g
    return {"loss": loss, "perturbed_loss": perturbed, "sharpness": perturbed - loss,
            "settings": settings(n=num_examples(data), rho=rho, adaptive=adaptive, eta=eta, mode=mode)}


def worst_case_sharpness(model: nn.Module, loss_fn: LossFn, data: Batches, rho: float = 0.05, steps: int = 10,
                         step_size: float | None = None, adaptive: bool = False, seed: int = 0, mode: str = "eval",
                         eta: float = 0.01, m: int | None = None) -> dict[str, Any]:
    """max_{||delta|| <= rho} L(w + delta) - L(w) by projected gradient ascent (adaptive: ||delta / T|| <= rho,
    T = |w| + eta), a lower bound on the true maximum that SAM's one step only approximates.

    Ascent runs on u = delta / T (T = 1 without ``adaptive``) from a seeded random point of norm 1e-3 rho:
    ``steps`` normalised gradient steps of ``step_size`` (default rho), each projected back onto the ball; the
    result is the largest loss over all iterates. Starting near w, the first step lands (nearly) on SAM's e, so the
    result is >= :func:`sam_sharpness` in practice; the random part breaks the tie where the gradient vanishes.
    Not 2 rho / steps: on the sphere a step of size s turns u by at most atan(s / rho), so a total path of 2 rho
    stalls about a radian from where it meets the sphere, however many steps. Not a start uniform in the ball: in
    high dimension that is a random direction on the sphere, and the turning budget is spent getting back.
    ``m`` (Foret et al.'s m-sharpness): split the sample into consecutive chunks of m examples, take the worst
    case of each (chunk k seeded ``seed + k``) and average over chunks weighted by size. None: the whole sample.
    """
    if rho < 0 or steps < 1:
        raise ValueError(f"worst-case sharpness needs rho >= 0 and steps >= 1, got rho={rho}, steps={steps}")
    if m is not None and m < 1:
        raise ValueError(f"m-sharpness chunk size m must be >= 1, got {m}")
    step = rho if step_size is None else step_size
    chunks = [data] if m is None else _split(data, m)
    names, params = select_params(model)
    with analysis_mode(model, mode), preserved_state(model) as origin:
        start = [origin[n] for n in names]
        scale = [w.abs() + eta for w in start] if adaptive else None
        results = [_ascend(model, loss_fn, chunk, params, start, scale, rho, steps, step, seed + k)
                   for k, chunk in enumerate(chunks)]
    total = num_examples(data)
    weights = [num_examples(chunk) / total for chunk in chunks]
    loss = sum(w * r[0] for w, r in zip(weights, results))
    worst = sum(w * r[1] for w, r in zip(weights, results))
    return {"loss": loss, "max_loss": worst, "sharpness": worst - loss, "steps": steps,
            "settings": settings(n=total, rho=rho, steps=steps, step_size=step, adaptive=adaptive, eta=eta, m=m,
                                 chunks=len(chunks), seed=seed, mode=mode)}


def loss_and_grad(model: nn.Module, loss_fn: LossFn, data: Batches,
                  params: Sequence[nn.Parameter]) -> tuple[float, Vector]:
    """:func:`core.mean_loss` (the same value, bit for bit) and its gradient, backpropagating one batch at a time."""
    total = num_examples(data)
    loss: Any = 0
    grads = [torch.zeros_like(p) for p in params]
    for x, y in data:
        part = loss_fn(model(x), y) * (len(y) / total)
        for acc, g in zip(grads, torch.autograd.grad(part, params)):
            acc.add_(g)
        loss = loss + part.detach()
    return float(loss), grads


def _ascend(model: nn.Module, loss_fn: LossFn, data: Batches, params: Sequence[nn.Parameter],
            start: Vector, scale: Vector | None, rho: float, steps: int, step: float, seed: int) -> tuple[float, float]:
    """(L(w), the largest L(w + T u) over the PGA iterates u) on one chunk of data."""
    def scaled(v: Vector) -> Vector:  # T v; its transpose maps a gradient in delta to one in u (T is diagonal)
        return v if scale is None else [t * x for t, x in zip(scale, v)]

    generator = torch.Generator().manual_seed(seed)
    u = gaussian_like(params, generator)
    u = _rescale(u, _START * rho / float(norm(u)))
    move_to(params, start, [], [])
    with torch.no_grad():
        loss = float(mean_loss(model, loss_fn, data))
    worst = -math.inf
    for _ in range(steps):
        move_to(params, start, [scaled(u)], [1.0])
        value, grads = loss_and_grad(model, loss_fn, data, params)
        advance()
        worst = max(worst, value)
        ascent = scaled(grads)
        u = [x + a for x, a in zip(u, _rescale(ascent, step / (float(norm(ascent)) + 1e-12)))]
        length = float(norm(u))
        if length > rho:
            u = _rescale(u, rho / length)
    move_to(params, start, [scaled(u)], [1.0])
    with torch.no_grad():
        return loss, max(worst, float(mean_loss(model, loss_fn, data)))


def _rescale(v: Vector, factor: float) -> Vector:
    return [x * factor for x in v]


def _split(data: Batches, m: int) -> list[Batches]:
    """Consecutive chunks of m examples (the last may be smaller), each one batch."""
    x = torch.cat([b for b, _ in data])
    y = torch.cat([t for _, t in data])
    return [[(x[s:s + m], y[s:s + m])] for s in range(0, len(y), m)]
