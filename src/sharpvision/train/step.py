"""One optimisation step, plain or SAM, as a callable ``step(x, y) -> (loss, logits)``.

The loop only calls ``step``; what a step does (one pass or SAM's two, autocast, clipping) is decided
here once. Returned tensors are detached and stay on the device: no host synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.optim import Optimizer

from sharpvision.optim.sam import SAM, frozen_bn_stats, replay_rng

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def make_step(model: nn.Module, optimizer: Optimizer, loss_fn: nn.Module, clip_grad_norm: float | None,
              autocast: Callable[[], AbstractContextManager]) -> StepFn:
    """A training step for ``optimizer``: two passes when it is a :class:`SAM`, one otherwise."""

    def forward_backward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()

    def descend() -> None:
        if clip_grad_norm is not None:  # the gradient that moves the weights is the one clipped
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if isinstance(optimizer, SAM):
            optimizer.unperturb_and_step()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def base_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = forward_backward(x, y)
        descend()
        return out

    def sam_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with replay_rng() as replay:
            out = forward_backward(x, y)  # L(w): the loss we report
            optimizer.perturb()
            optimizer.zero_grad(set_to_none=True)
            replay()  # same dropout masks at w + e
            with frozen_bn_stats(model):  # BN running statistics from the first pass only
                forward_backward(x, y)
        descend()
        return out

    return sam_step if isinstance(optimizer, SAM) else base_step
