"""One optimisation step, plain or SAM, as a callable ``step(x, y) -> (loss, logits)``.

The loop only calls ``step``; what a step does (one pass or SAM's two, autocast, clipping) is decided
here once. Returned tensors are detached and stay on the device: no host synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim import Optimizer

from sharpvision.optim.sam import SAM
from sharpvision.passes import frozen_bn_stats, replay_rng

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class PerturbationGroups:
    """Which examples one SAM perturbation is computed on (m-sharpness, Foret et al. Sec. 4.1).

    ``splits`` groups of m examples per worker batch, each with its own ascent; ``no_sync`` keeps the ascent
    gradient on this worker (DDP's ``no_sync``: forward and backward inside it); ``share``, when m spans several
    workers, averages the ascent gradient over them; ``average`` averages over all workers what must agree
    everywhere, such as the plain gradient GSAM and LookSAM combine with the (all-reduced) SAM gradient, or the
    workers would step apart. The default is one perturbation per batch of one process.
    """

    splits: int = 1
    no_sync: Callable[[], AbstractContextManager] = field(default=nullcontext)
    share: Callable[[list[torch.Tensor]], None] | None = None
    average: Callable[[list[torch.Tensor]], None] | None = None


def make_step(model: nn.Module, optimizer: Optimizer, loss_fn: nn.Module, clip_grad_norm: float | None,
              autocast: Callable[[], AbstractContextManager], sam_every: int = 1,
              step_index: Callable[[], int] | None = None, groups: PerturbationGroups | None = None) -> StepFn:
    """A training step for ``optimizer``: two passes when it is a :class:`SAM`, one otherwise.

    ``sam_every=k`` (SAM-k, Composer's ``interval``): SAM's two passes only on steps whose ``step_index()`` is a
    multiple of k; the others take one pass and a plain base-optimizer step, so they really cost one pass. The
    index comes from the caller (the trainer passes the scheduler's step count, which a resume restores).
    ``groups`` sets m (see :class:`PerturbationGroups`); under DDP the descent gradient is all-reduced as usual.
    """
    if sam_every < 1:
        raise ValueError(f"sam_every must be >= 1, got {sam_every}")
    if sam_every > 1 and (step_index is None or not isinstance(optimizer, SAM)):
        raise ValueError("sam_every > 1 needs a SAM optimizer and a step_index callable")
    groups = groups or PerturbationGroups()
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def forward_backward(x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        (loss * scale if scale != 1.0 else loss).backward()
        return loss.detach(), logits.detach()

    def descend() -> None:
        if isinstance(optimizer, SAM):  # GSAM / LookSAM combine their gradients first
            if groups.average is not None and optimizer.first_gradient:
                groups.average(optimizer.first_gradient)
            optimizer.shape_gradient()
        if clip_grad_norm is not None:  # the gradient that moves the weights is the one clipped
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
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

    def ascend(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L(w) and its gradient on this group, kept local, shared over m's workers if m spans several; perturb."""
        with groups.no_sync():
            out = forward_backward(x, y)
        if groups.share is not None:
            groups.share([p.grad for p in params if p.grad is not None])
        optimizer.perturb()
        optimizer.zero_grad(set_to_none=True)
        return out

    def sam_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if sam_every > 1 and step_index() % sam_every:
            return base_step(x, y)
        n = groups.splits
        outs, held = [], []  # held: the descent gradients of the groups done so far, summed
        for j, (xj, yj) in enumerate(zip(x.chunk(n), y.chunk(n))):
            last = j == n - 1
            with replay_rng() as replay:
                outs.append(ascend(xj, yj))  # L(w): the loss we report
                for p, g in held:
                    p.grad = g
                replay()  # same dropout masks at w + e
                # BN running statistics from the first pass only; the last group's backward all-reduces the sum
                with frozen_bn_stats(model), (nullcontext() if last else groups.no_sync()):
                    forward_backward(xj, yj, 1.0 / n)
            if not last:
                held = [(p, p.grad) for p in params if p.grad is not None]
                optimizer.zero_grad(set_to_none=True)
                optimizer.unperturb()
        descend()
        if n == 1:
            return outs[0]
        return torch.stack([loss for loss, _ in outs]).mean(), torch.cat([logits for _, logits in outs])

    return sam_step if isinstance(optimizer, SAM) else base_step
