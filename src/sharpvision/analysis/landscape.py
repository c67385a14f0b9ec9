"""Loss landscapes (Li et al., NeurIPS 2018): 1-D and 2-D slices of the loss through weight space around a model.

A raw Gaussian direction is meaningless for networks whose layers are scale-invariant (BatchNorm, LayerNorm): a
step of the same size is large for a small-norm filter and negligible for a large one. Filter normalisation gives
each filter of the direction the norm of the matching weight filter, so slices of different models are comparable.

BatchNorm, as Li et al. do it: random directions live on the parameters only, the running statistics stay as they
are and the model is evaluated in eval mode. Interpolating to another model (Goodfellow et al. 2015) moves the
running statistics too, so that both ends are exactly the two models.

Every function moves the weights in place and copies the saved tensors back afterwards, also on error, so the model
leaves bit-identical (and optimizers or compiled graphs holding its tensors stay valid).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    num_examples,
    select_params,
    settings,
)

NORMALIZATIONS = ("filter", "layer")
IGNORES = ("biasbn", None)
_EPS = 1e-10  # Li et al.'s guard against a zero-norm direction filter


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Yield copies of every parameter and buffer by name; copy them back in place on exit, also on error."""
    live = dict(model.named_parameters()) | dict(model.named_buffers())
    saved = {name: t.detach().clone() for name, t in live.items()}
    try:
        yield saved
    finally:
        with torch.no_grad():
            for name, t in live.items():
                t.copy_(saved[name])


def gaussian_like(params: Sequence[torch.Tensor], generator: torch.Generator) -> Vector:
    """Standard normal tensors shaped like ``params``, drawn in float32 on the CPU so that a seed gives the same
    draw on every device and in every dtype."""
    return [torch.randn(p.shape, generator=generator).to(p) for p in params]


@torch.no_grad()
def move_to(params: Sequence[torch.Tensor], origin: Sequence[torch.Tensor], directions: Sequence[Vector],
            coeffs: Sequence[float]) -> None:
    """Set params to origin + sum_k c_k d_k in place; all c_k = 0 gives the origin bit for bit."""
    for i, p in enumerate(params):
        p.copy_(origin[i])
        for d, c in zip(directions, coeffs):
            p.add_(d[i], alpha=c)


def evaluate(model: nn.Module, loss_fn: LossFn, data: Batches) -> tuple[float, float | None]:
    """(mean loss, accuracy) from one forward pass per batch; the loss is exactly :func:`core.mean_loss`.

    Accuracy is None unless the outputs are (N, C) logits and the labels class indices.
    """
    correct: list[int] = []

    def scored(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 2 and not y.is_floating_point():
            correct.append(int((logits.argmax(1) == y).sum()))
        return loss_fn(logits, y)

    with torch.no_grad():
        loss = float(mean_loss(model, scored, data))
    return loss, sum(correct) / num_examples(data) if len(correct) == len(data) else None


def random_direction(model: nn.Module, seed: int, normalization: str = "filter",
                     ignore: str | None = "biasbn") -> Vector:
    """A seeded Gaussian direction over the trainable parameters (in :func:`core.select_params` order).

    ``normalization="filter"``: every slice along dim 0 of a parameter with ndim >= 2 (a conv filter, a row of a
    linear weight) gets the norm of the same slice of the weight; ``"layer"``: the whole tensor gets the weight's
    norm. 1-D parameters (biases, norm scales) are zeroed with ``ignore="biasbn"`` (Li et al.'s default: moving
    them mostly rescales activations) and otherwise normalised as a whole. BatchNorm running statistics are not
    parameters and are never moved.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"direction normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if ignore not in IGNORES:
        raise ValueError(f"direction ignore must be one of {IGNORES}, got {ignore!r}")
    _, params = select_params(model)
    direction = gaussian_like(params, torch.Generator().manual_seed(seed))
    for d, w in zip(direction, (p.detach() for p in params)):
        if d.ndim <= 1 and ignore == "biasbn":
            d.zero_()
        elif d.ndim <= 1 or normalization == "layer":
            d.mul_(w.norm() / (d.norm() + _EPS))
        else:
            dims = tuple(range(1, d.ndim))
            d.mul_(torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                   / (torch.linalg.vector_norm(d, dim=dims, keepdim=True) + _EPS))
    return direction


def loss_landscape_1d(model: nn.Module, loss_fn: LossFn, data: Batches, direction: Vector | None = None,
                      other: nn.Module | None = None, steps: int = 21, span: tuple[float, float] = (-1.0, 1.0),
                      seed: int = 0, mode: str = "eval", normalization: str = "filter",
                      ignore: str | None = "biasbn") -> dict[str, Any]:
    """Loss and accuracy at ``steps`` points alpha in ``span`` along one line through the model (alpha = 0).

    Three lines: theta0 + alpha d for a given ``direction`` (used as is) or, by default, the filter-normalised
    :func:`random_direction` of ``seed``; or, with ``other``, (1 - alpha) theta0 + alpha theta1 over parameters
    and floating buffers (BN statistics), so alpha = 1 is ``other`` exactly (use e.g. span (-0.5, 1.5)).
    """
    if direction is not None and other is not None:
        raise ValueError("loss_landscape_1d takes a direction or another model to interpolate to, not both")
    alphas = _grid(span, steps)
    kind = "interpolation" if other is not None else "random" if direction is None else "given"
    with analysis_mode(model, mode), preserved_state(model) as origin:
        if other is not None:
            move = _interpolation(model, other, origin)
        else:
            names, params = select_params(model)
            d = random_direction(model, seed, normalization, ignore) if direction is None else direction
            _check_layout(d, params)
            move = _line(params, [origin[n] for n in names], d)
        points = []
        for alpha in alphas:
            move(alpha)
            points.append(evaluate(model, loss_fn, data))
            advance()
    random = {"seed": seed, "normalization": normalization, "ignore": ignore} if kind == "random" else {}
    recorded = settings(n=num_examples(data), steps=steps, span=list(span), direction=kind, mode=mode, **random)
    return {"alphas": alphas, "loss": [p[0] for p in points], "accuracy": [p[1] for p in points],
            "settings": recorded}


def loss_landscape_2d(model: nn.Module, loss_fn: LossFn, data: Batches, steps: int = 11,
                      span: tuple[float, float] = (-1.0, 1.0), seed: int = 0, mode: str = "eval",
                      normalization: str = "filter", ignore: str | None = "biasbn") -> dict[str, Any]:
    """Loss and accuracy on the plane theta0 + alpha d1 + beta d2 (d1, d2: :func:`random_direction` of seeds
    ``seed`` and ``seed + 1``), ``steps`` x ``steps`` points over ``span`` squared; ``loss[i][j]`` is at
    (alphas[i], betas[j]). ``center_loss`` is the model's own loss on ``data`` (:func:`core.mean_loss`);
    ``mean_loss`` the mean over the plane (one number for how high the neighbourhood lies, compared across runs)."""
    grid = _grid(span, steps)
    names, params = select_params(model)
    seeds = [seed, seed + 1]
    directions = [random_direction(model, s, normalization, ignore) for s in seeds]
    with analysis_mode(model, mode), preserved_state(model) as origin:
        center = evaluate(model, loss_fn, data)[0]
        start = [origin[n] for n in names]
        points = []
        for alpha in grid:
            row = []
            for beta in grid:
                move_to(params, start, directions, [alpha, beta])
                row.append(evaluate(model, loss_fn, data))
                advance()
            points.append(row)
    recorded = settings(n=num_examples(data), steps=steps, span=list(span), seeds=seeds, mode=mode,
                        normalization=normalization, ignore=ignore)
    loss = [[p[0] for p in row] for row in points]
    return {"alphas": grid, "betas": grid, "loss": loss, "accuracy": [[p[1] for p in row] for row in points],
            "center_loss": center, "mean_loss": statistics.fmean(x for row in loss for x in row),
            "settings": recorded}


def loss_landscape(model: nn.Module, loss_fn: LossFn, data: Batches, dims: int = 2, **kwargs: Any) -> dict[str, Any]:
    """One entry point for both: ``dims=1`` is :func:`loss_landscape_1d`, ``dims=2`` :func:`loss_landscape_2d`."""
    if dims not in (1, 2):
        raise ValueError(f"loss_landscape dims must be 1 or 2, got {dims}")
    return (loss_landscape_1d if dims == 1 else loss_landscape_2d)(model, loss_fn, data, **kwargs)


def _grid(span: tuple[float, float], steps: int) -> list[float]:
    """Evenly spaced points, computed so that round values (0 and 1 in the usual spans) come out exact."""
    if steps < 2:
        raise ValueError(f"landscape steps must be >= 2, got {steps}")
    lo, hi = span
    return [lo + (hi - lo) * i / (steps - 1) for i in range(steps)]


def _check_layout(direction: Vector, params: Sequence[torch.Tensor]) -> None:
    if len(direction) != len(params) or any(d.shape != p.shape for d, p in zip(direction, params)):
        raise ValueError("direction must hold one tensor per trainable parameter, shaped like it "
                         "(the layout of random_direction / core.select_params)")


def _line(params: Sequence[torch.Tensor], start: Sequence[torch.Tensor], direction: Vector) -> Callable[[float], None]:
    """alpha -> model set to theta0 + alpha d."""
    def move(alpha: float) -> None:
        move_to(params, start, [direction], [alpha])

    return move


def _interpolation(model: nn.Module, other: nn.Module, origin: dict[str, torch.Tensor]) -> Callable[[float], None]:
    """alpha -> model set to lerp(theta0, theta1, alpha) for parameters and floating buffers, exact at 0 and 1
    (integer buffers such as num_batches_tracked keep the model's value)."""
    live = dict(model.named_parameters()) | dict(model.named_buffers())
    ends = dict(other.named_parameters()) | dict(other.named_buffers())
    if live.keys() != ends.keys() or any(live[k].shape != ends[k].shape for k in live):
        raise ValueError("can only interpolate between models of the same architecture "
                         "(parameter and buffer names and shapes differ)")
    pairs = [(t, origin[k], ends[k].detach().to(t)) for k, t in live.items() if t.is_floating_point()]

    @torch.no_grad()
    def move(alpha: float) -> None:
        for t, start, end in pairs:
            t.copy_(torch.lerp(start, end, alpha))

    return move
