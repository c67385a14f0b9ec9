"""Adversarial training (the recipe's ``adv`` section): the adversary a training step trains on.

PGD-AT (Madry et al. 2018): each step first crafts x_adv = PGD(x, y) against the current weights, then takes the
usual step (plain, SAM's two passes, any SAM variant, SAM-k) on x_adv; :func:`sharpvision.train.step.make_step`
applies the adversary once per step. The attack is :func:`sharpvision.evaluate.adversarial.pgd`, the one
``sharpvision eval --attack pgd`` measures with, so training and evaluation share one threat model: eps in pixel
units, the normalisation inside the attacked function, the same step-size rule.

Choices, and why:

- **Eval mode for the attack** (``pgd`` switches to it and restores the mode): BatchNorm uses its running
  statistics and leaves them unchanged, so the running statistics come only from the training pass on x_adv (the
  attack's ``steps`` forward passes would otherwise dominate them); no dropout masks are drawn, so the attack
  consumes no randomness but its random start. The reference TRADES code does the same; some PGD-AT code (Rice
  et al. 2020) attacks in train mode, where the attack sees batch statistics and moves the running ones.
- **The plain model**, not the DDP or compiled wrapper: the attack's gradient is w.r.t. the input only (no
  parameter ``.grad``), DDP's reducer expects parameter gradients after a training forward, and each worker attacks
  its own examples anyway. Under the run's autocast, so it runs at the training precision.
- **Random starts from the global torch RNG** on the batch's device (CPU, or the current CUDA device): the RNG
  every checkpoint saves per worker, so a resumed run draws the same starts as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn

from sharpvision.config import AdvConfig
from sharpvision.evaluate.adversarial import ALPHA_RULE, normalize, pgd
from sharpvision.train.step import Adversary


def pgd_adversary(model: nn.Module, adv: AdvConfig, mean: Sequence[float], std: Sequence[float],
                  autocast: Callable[[], AbstractContextManager]) -> Adversary:
    """``(x, y) -> normalize(PGD(x, y))``: normalised batches in, normalised adversarial batches out (``y`` hard
    labels), so a step takes them like any batch. ``mean``/``std`` are the data's normalisation."""

    def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast():
            x_adv = pgd(model, x, y, adv.eps, mean=mean, std=std, steps=adv.steps, alpha=adv.alpha, norm=adv.norm,
                        random_start=adv.random_start)
        return normalize(x_adv, mean, std)

    return attack


def describe(adv: AdvConfig) -> str:
    """``PGD-10 linf eps=0.03137 alpha=2.5*eps/steps``: what the training inputs are, for the log and summary."""
    alpha = ALPHA_RULE if adv.alpha is None else f"{adv.alpha:.4g}"
    start = "" if adv.random_start else ", no random start"
    return f"PGD-{adv.steps} {adv.norm} eps={adv.eps:.4g} alpha={alpha}{start}"
