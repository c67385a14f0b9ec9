"""Adversarial robustness: FGSM and PGD (L-inf and L2), robust accuracy per eps, AutoAttack, gradient-masking checks.

Threat model: the repo's datasets yield *normalised* images, but eps means something only in pixel units (8/255 is
"8 grey levels"). So every attack takes normalised inputs as the loaders give them, maps them back to [0, 1] pixel
space, perturbs there within the eps-ball and inside [0, 1], and feeds ``model(normalize(x_adv))``: the
normalisation is part of the attacked function, and the attacks return pixel-space images (``normalize`` them to
train on them).

Step size: unless ``alpha`` is given, PGD steps ``alpha = 2.5 * eps / steps`` for both norms, the rule of the Madry
lab's ``robustness`` library (e.g. L2 eps 0.5, 20 steps, step 0.0625). The steps then travel 2.5 eps in all: enough
to cross the ball from a random start and still move along its boundary, at any eps and step count, where a fixed
alpha is too coarse for a small eps and too short for a large one. At torchattacks' defaults (eps 8/255, 10 steps)
it gives their alpha, 2/255. FGSM is one step of size eps from the clean image (no random start).

Restarts: ``restarts`` independent PGD runs, each from its own random start; an example keeps the first run's
result that fools the model, and an example no run fools keeps the run with the highest loss. Later runs attack
only the examples not yet fooled. Each run returns its last iterate, as torchattacks does (so ``restarts=1`` is the
textbook PGD, comparable example for example).

The model is put in eval mode (BN running statistics, no dropout) and its train/eval state restored after; gradients
are taken with ``torch.autograd.grad`` w.r.t. the input only, so no parameter ``.grad`` is touched. The attack loss
sums the per-example cross-entropies, so an example's attack does not depend on what else is in its batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sharpvision.errors import SharpvisionError
from sharpvision.evaluate.progress import bar as progress_bar

ATTACKS = ("fgsm", "pgd")
NORMS = ("linf", "l2")
ALPHA_RULE = "2.5*eps/steps"
_TINY = 1e-12  # floor of a gradient or perturbation norm, so a zero vector stays zero instead of NaN

Stats = Sequence[float] | torch.Tensor
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class AttackError(SharpvisionError, ValueError):
    """A bad attack setting (name, norm, eps, steps, ...) or the missing optional torchattacks: one line naming it."""


def _check(attack: str = "pgd", norm: str = "linf", eps: Iterable[float] = (), steps: int = 1, restarts: int = 1,
           alpha: float | None = None) -> None:
    """One-line AttackErrors naming the bad argument, raised before any work."""
    if attack not in ATTACKS:
        raise AttackError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if norm not in NORMS:
        raise AttackError(f"unknown attack norm {norm!r}; choose one of {', '.join(NORMS)}")
    for e in eps:
        if not math.isfinite(e):
            raise AttackError(f"attack eps {e} is not a finite number (pixel units, e.g. 8/255)")
        if e < 0:
            raise AttackError(f"attack eps must be >= 0 (pixel units, e.g. 8/255), got {e}")
        if norm == "linf" and e > 1:  # pixels lie in [0, 1]: the linf ball of radius 1 already holds every image
            raise AttackError(f"attack eps {e} is out of range for linf: pixels lie in [0, 1], so eps <= 1 (at 1 "
                              "the ball already holds every image)")
    if steps < 1:
        raise AttackError(f"attack steps must be >= 1, got {steps}")
    if restarts < 1:
        raise AttackError(f"attack restarts must be >= 1, got {restarts}")
    if alpha is not None and not alpha > 0:
        raise AttackError(f"attack step size alpha must be > 0, got {alpha}")


def check_attack(attack: str, norm: str, eps: Iterable[float], steps: int = 1, restarts: int = 1) -> None:
    """What ``sharpvision eval --attack`` asked for, checked before any work (autoattack included): one-line
    AttackErrors naming the bad argument."""
    if attack == "autoattack":
        _check(norm=norm, eps=eps)
    else:
        _check(attack, norm, eps, steps, restarts)


def _stats(values: Stats, x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean or std as a float32 (1, C, 1, 1) tensor on x's device (float32 like torchattacks', so the
    two normalise bit for bit alike)."""
    t = torch.as_tensor(values, dtype=torch.float32)
    return t.reshape(1, -1, 1, 1).to(x.device)


def normalize(x: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """Pixel space [0, 1] -> the model's input scale."""
    return (x - _stats(mean, x)) / _stats(std, x)


def to_pixels(x: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """The model's input scale -> pixel space, clamped to [0, 1] (round-off of the loaders' normalisation)."""
    return (x * _stats(std, x) + _stats(mean, x)).clamp(0, 1)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the attack, the caller's train/eval state restored after (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast over t."""
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


def _project(x0: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Back into the eps-ball around x0, then into [0, 1] (the clamp only shrinks the perturbation)."""
    delta = x - x0
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _flat_norm(delta)).clamp(max=1)
    return (x0 + delta).clamp(0, 1)


def _random_start(x0: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """L-inf: uniform in the cube; L2: a Gaussian direction at a radius uniform in [0, eps] (torchattacks' draws).
    Drawn on the generator's device and moved, so a CPU generator gives the same starts on any device."""
    device = generator.device if generator is not None else x0.device
    if norm == "linf":
        delta = (torch.rand(x0.shape, generator=generator, device=device) * 2 - 1) * eps
    else:
        direction = torch.randn(x0.shape, generator=generator, device=device)
        radius = torch.rand((x0.shape[0],), generator=generator, device=device).view(-1, *([1] * (x0.dim() - 1)))
        delta = direction / _flat_norm(direction) * radius * eps
    return (x0 + delta.to(x0.device)).clamp(0, 1)


def _logits(model: nn.Module, x: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    return model(normalize(x, mean, std)).float()


def _ascend(model: nn.Module, x0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
            steps: int, norm: str, mean: Stats, std: Stats) -> torch.Tensor:
    """``steps`` projected gradient-ascent steps on the cross-entropy from x; the last iterate."""
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(_logits(model, x, mean, std), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        step = grad.sign() if norm == "linf" else grad / _flat_norm(grad)
        x = _project(x0, x.detach() + alpha * step, eps, norm)
    return x.detach()


def _outcome(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: Stats, std: Stats
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example loss, fooled) at x."""
    with torch.no_grad():
        logits = _logits(model, x, mean, std)
    return F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, mean: Stats, std: Stats
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial pixels, fooled); the model already in eval mode."""
    x0 = to_pixels(x, mean, std)
    adv = _ascend(model, x0, x0, y, eps, eps, 1, norm, mean, std)
    return adv, _outcome(model, adv, y, mean, std)[1]


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, alpha: float | None, norm: str,
         random_start: bool, restarts: int, generator: torch.Generator | None, mean: Stats, std: Stats
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial pixels, fooled) with the restart bookkeeping; the model already in eval mode."""
    x0 = to_pixels(x, mean, std)
    alpha = 2.5 * eps / steps if alpha is None else alpha
    best, best_loss = x0.clone(), torch.full(y.shape, -math.inf, device=x0.device)
    fooled = torch.zeros(y.shape, dtype=torch.bool, device=x0.device)
    for _ in range(restarts):
        todo = (~fooled).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        start = _random_start(x0[todo], eps, norm, generator) if random_start else x0[todo]
        adv = _ascend(model, x0[todo], start, y[todo], eps, alpha, steps, norm, mean, std)
        loss, wrong = _outcome(model, adv, y[todo], mean, std)
        keep = wrong | (loss > best_loss[todo])
        best[todo[keep]] = adv[keep]
        best_loss[todo[keep]] = loss[keep]
        fooled[todo[wrong]] = True
    return best, fooled


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, mean: Stats, std: Stats,
         norm: str = "linf") -> torch.Tensor:
    """Fast gradient (sign) method (Goodfellow et al. 2015): one step of size eps from the clean image, along
    sign(grad) (L-inf) or grad / ||grad|| (L2, "FGM"), clamped to [0, 1].

    ``x`` is a normalised batch as the loaders give it; returns the adversarial images in pixel space [0, 1].
    """
    _check(norm=norm, eps=[eps])
    with _eval_mode(model):
        return _fgsm(model, x, y, eps, norm, mean, std)[0]


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, mean: Stats, std: Stats,
        steps: int = 10, alpha: float | None = None, norm: str = "linf", random_start: bool = True,
        restarts: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent on the loss (Madry et al. 2018), L-inf or L2, with random start and restarts.

    ``x`` is a normalised batch as the loaders give it; returns the adversarial images in pixel space [0, 1].
    ``alpha`` defaults to 2.5 * eps / steps (module docstring); random starts come from ``generator`` (global RNG
    when None). See the module docstring for what a restart keeps.
    """
    _check(norm=norm, eps=[eps], steps=steps, restarts=restarts, alpha=alpha)
    with _eval_mode(model):
        if restarts == 1:  # one run keeps its last iterate: no scoring pass, no host sync (a training step's path)
            x0 = to_pixels(x, mean, std)
            start = _random_start(x0, eps, norm, generator) if random_start else x0
            return _ascend(model, x0, start, y, eps, 2.5 * eps / steps if alpha is None else alpha, steps, norm,
                           mean, std)
        return _pgd(model, x, y, eps, steps, alpha, norm, random_start, restarts, generator, mean, std)[0]


def _floats(values: Stats) -> list[float]:
    return [float(v) for v in torch.as_tensor(values).flatten()]


def _device_of(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


def robust_accuracy(model: nn.Module, batches: Batches, eps_list: Sequence[float], *, mean: Stats, std: Stats,
                    attack: str = "pgd", norm: str = "linf", steps: int = 10, alpha: float | None = None,
                    restarts: int = 1, random_start: bool = True, device: torch.device | str | None = None,
                    seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accuracy under ``attack`` at each eps of ``eps_list`` (pixel units; eps 0 is the clean accuracy), one pass
    over ``batches`` of normalised (x, y). The random starts come from a CPU generator seeded with ``seed``, so a
    result is reproducible and the same on any device up to float round-off. A progress bar on a terminal with
    ``progress``.

    Returns ``{"attack", "norm", "steps", "restarts", "alpha", "seed", "n", "accuracy": {eps: accuracy}}``.
    """
    _check(attack, norm, eps_list, steps, restarts, alpha)
    if not eps_list:
        raise AttackError("robust accuracy needs at least one eps in eps_list")
    device = _device_of(model, device)
    generator = torch.Generator().manual_seed(seed)
    correct = {float(e): 0 for e in eps_list}
    n = 0
    with _eval_mode(model), progress_bar(batches, len(correct), f"{attack} {norm}", progress) as passes:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            for eps in correct:
                if eps == 0:  # the loader's inputs as they are, so this is exactly the clean accuracy
                    with torch.no_grad():
                        fooled = model(x).argmax(1) != y
                elif attack == "fgsm":
                    fooled = _fgsm(model, x, y, eps, norm, mean, std)[1]
                else:
                    fooled = _pgd(model, x, y, eps, steps, alpha, norm, random_start, restarts, generator, mean,
                                  std)[1]
                correct[eps] += int((~fooled).sum())
                passes.update()
            n += y.numel()
    if n == 0:
        raise AttackError("robust accuracy: the batches yielded no examples")
    fgsm_run = attack == "fgsm"
    return {"attack": attack, "norm": norm, "steps": 1 if fgsm_run else steps, "restarts": 1 if fgsm_run else restarts,
            "alpha": "eps" if fgsm_run else (alpha if alpha is not None else ALPHA_RULE), "seed": seed, "n": n,
            "accuracy": {eps: c / n for eps, c in correct.items()}}


def autoattack_accuracy(model: nn.Module, batches: Batches, eps_list: Sequence[float], *, mean: Stats, std: Stats,
                        norm: str = "linf", version: str = "standard", device: torch.device | str | None = None,
                        seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accuracy under AutoAttack (Croce & Hein 2020; APGD-CE, APGD-T, FAB-T, Square in the standard version),
    through torchattacks (an optional dependency, imported here): a stronger, slower, parameter-free evaluation
    than PGD, reported under its own name so it is never mistaken for PGD numbers.

    Returns ``{"attack": "autoattack (torchattacks, VERSION)", "norm", "seed", "n", "accuracy": {eps: accuracy}}``;
    a progress bar on a terminal with ``progress``.
    """
    _check(norm=norm, eps=eps_list)
    try:
        import torchattacks
    except ImportError:
        raise AttackError("autoattack_accuracy needs torchattacks (optional): pip install --no-deps "
                          "torchattacks==3.5.1") from None
    device = _device_of(model, device)
    correct = {float(e): 0 for e in eps_list}
    n = 0
    attacks: dict[float, Any] = {}
    with _eval_mode(model), progress_bar(batches, len(correct), "autoattack", progress) as passes:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            for eps in correct:
                if eps > 0 and eps not in attacks:  # built on the first batch, when the class count is known
                    with torch.no_grad():
                        num_classes = model(x[:1]).shape[1]
                    attacks[eps] = torchattacks.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps,
                                                           version=version, n_classes=num_classes, seed=seed)
                    attacks[eps].set_normalization_used(_floats(mean), _floats(std))  # takes/returns normalised x
                adv = attacks[eps](x, y) if eps > 0 else x
                with torch.no_grad():
                    correct[eps] += int((model(adv).argmax(1) == y).sum())
                passes.update()
            n += y.numel()
    if n == 0:
        raise AttackError("autoattack accuracy: the batches yielded no examples")
    return {"attack": f"autoattack (torchattacks, {version})", "norm": norm, "seed": seed, "n": n,
            "accuracy": {eps: c / n for eps, c in correct.items()}}


def masking_checks(model: nn.Module, batches: Batches, eps_list: Sequence[float], *, mean: Stats, std: Stats,
                   norm: str = "linf", steps: int = 10, more_steps: int | None = None, large_eps: float | None = None,
                   restarts: int = 1, device: torch.device | str | None = None, seed: int = 0, tol: float = 0.01,
                   near_zero: float = 0.01) -> dict[str, Any]:
    """The gradient-masking checks a reviewer asks for (Athalye et al. 2018; Carlini et al. 2019), each a boolean
    with the numbers behind it. A model whose gradients hide its loss fails at least one:

    - ``more_steps_no_better``: PGD with ``more_steps`` (default 5x ``steps``) is never above PGD-``steps``
      accuracy at any eps (+ ``tol``, the noise of random starts on a finite sample);
    - ``large_eps_near_zero``: PGD accuracy at ``large_eps`` is <= ``near_zero``; the default large eps reaches
      every image of [0, 1] (L-inf 1, L2 the cube's diagonal), so only a constant model or a failed attack
      keeps any accuracy;
    - ``fgsm_not_below_pgd``: FGSM accuracy >= PGD accuracy (- ``tol``) at each eps: one step cannot beat many.

    ``batches`` is read several times: pass a list or a DataLoader, not a one-shot iterator.
    """
    more_steps = 5 * steps if more_steps is None else more_steps
    _check(norm=norm, eps=[*eps_list, *([] if large_eps is None else [large_eps])], steps=steps, restarts=restarts)
    if more_steps <= steps:
        raise AttackError(f"masking check more_steps must be > steps ({steps}), got {more_steps}")
    if large_eps is None:
        x, _ = next(iter(batches))
        large_eps = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    common = dict(mean=mean, std=std, norm=norm, restarts=restarts, device=device, seed=seed)
    pgd_acc = robust_accuracy(model, batches, eps_list, steps=steps, **common)["accuracy"]
    more_acc = robust_accuracy(model, batches, eps_list, steps=more_steps, **common)["accuracy"]
    fgsm_acc = robust_accuracy(model, batches, eps_list, attack="fgsm", **common)["accuracy"]
    large_acc = robust_accuracy(model, batches, [large_eps], steps=steps, **common)["accuracy"][float(large_eps)]
    checks = {
        "more_steps_no_better": all(more_acc[e] <= pgd_acc[e] + tol for e in pgd_acc),
        "large_eps_near_zero": large_acc <= near_zero,
        "fgsm_not_below_pgd": all(fgsm_acc[e] >= pgd_acc[e] - tol for e in pgd_acc),
    }
    return {**checks, "passed": all(checks.values()), "norm": norm, "steps": steps, "more_steps": more_steps,
            "tol": tol, "near_zero": near_zero, "large_eps": float(large_eps), "pgd_large_eps": large_acc,
            "pgd": pgd_acc, "pgd_more_steps": more_acc, "fgsm": fgsm_acc}
