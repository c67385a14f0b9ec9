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
              autocast: Callable[[], AbstractContextManager], sam_every: int = 1,
              step_index: Callable[[], int] | None = None) -> StepFn:
    """A training step for ``optimizer``: two passes when it is a :class:`SAM`, one otherwise.

    ``sam_every=k`` (SAM-k, Composer's ``interval``): SAM's two passes only on steps whose ``step_index()`` is a
    multiple of k; the others take one pass and a plain base-optimizer step, so they really cost one pass. The
    index comes from the caller (the trainer passes the scheduler's step count, which a resume restores).
    """
    if sam_every < 1:
        raise ValueError(f"sam_every must be >= 1, got {sam_every}")
    if sam_every > 1 and (step_index is None or not isinstance(optimizer, SAM)):
        raise ValueError("sam_every > 1 needs a SAM optimizer and a step_index callable")

    def forward_backward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()

    def descend() -> None:
        if isinstance(optimizer, SAM):  # GSAM / LookSAM combine their gradients first
            optimizer.shape_gradient()
        if clip_grad_norm is not None:  # the gradient that moves the weights is the one clipped
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if isinstance(optimizer, SAM) and optimizer.perturbed:
            optimizer.unperturb_and_step()
        elif isinstance(optimizer, SAM):  # a SAM-k / LookSAM step without the ascent
            optimizer.skip_step()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def base_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = forward_backward(x, y)
        descend()
        return out

    def sam_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if sam_every > 1 and step_index() % sam_every:
            return base_step(x, y)
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
