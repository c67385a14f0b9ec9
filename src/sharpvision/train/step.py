"""One optimisation step, plain or SAM, as a callable ``step(x, y) -> (loss, logits)``.

The loop only calls ``step``; what a step does (one pass or SAM's two, autocast, clipping, an adversarial attack
on the batch first) is decided here once. Returned tensors are detached and stay on the device: no host
synchronisation per step.
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
Adversary = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> the inputs to train on, same scale


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
              step_index: Callable[[], int] | None = None, groups: PerturbationGroups | None = None,
              adversary: Adversary | None = None) -> StepFn:
    """A training step for ``optimizer``: two passes when it is a :class:`SAM`, one otherwise.

    ``sam_every=k`` (SAM-k, Composer's ``interval``): SAM's two passes only on steps whose ``step_index()`` is a
    multiple of k; the others take one pass and a plain base-optimizer step, so they really cost one pass. The
    index comes from the caller (the trainer passes the scheduler's step count, which a resume restores).
    ``groups`` sets m (see :class:`PerturbationGroups`); under DDP the descent gradient is all-reduced as usual.
    ``adversary`` (adversarial training): the step replaces the batch with ``adversary(x, y)``, crafted once at the
    current weights, and every pass of the step (both of SAM's, each of m's groups) trains on it; the returned loss
    and logits are then on the adversarial inputs.
    """
    if sam_every < 1:
        raise ValueError(f"sam_every must be >= 1, got {sam_every}")
    if sam_every > 1 and (step_index is None or not isinstance(optimizer, SAM)):
        raise ValueError("sam_every > 1 needs a SAM optimizer and a step_index callable")
    step = _Step(model, optimizer, loss_fn, clip_grad_norm, autocast, sam_every, step_index,
                 groups or PerturbationGroups())
    fn = step.sam if isinstance(optimizer, SAM) else step.plain
    return fn if adversary is None else _on_adversarial_inputs(fn, adversary)


def _on_adversarial_inputs(fn: StepFn, adversary: Adversary) -> StepFn:
    """``fn`` taken on ``adversary(x, y)``: one attack per step, before any pass (so SAM's ascent and descent see
    the same inputs, and a SAM-k step without the ascent attacks all the same)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fn(adversary(x, y), y)

    return step


@dataclass
class _Step:
    """The passes of one step, each a method short enough to check against the paper's algorithm."""

    model: nn.Module
    optimizer: Optimizer
    loss_fn: nn.Module
    clip_grad_norm: float | None
    autocast: Callable[[], AbstractContextManager]
    sam_every: int
    step_index: Callable[[], int] | None
    groups: PerturbationGroups

    def __post_init__(self) -> None:
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
        with self.autocast():
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
        (loss * scale if scale != 1.0 else loss).backward()
        return loss.detach(), logits.detach()

    def descend(self) -> None:
        """Combine (GSAM / LookSAM), clip the gradient that moves the weights, restore w and step."""
        opt = self.optimizer
        if isinstance(opt, SAM):
            if self.groups.average is not None and opt.first_gradient:
                self.groups.average(opt.first_gradient)
            opt.shape_gradient()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        if not isinstance(opt, SAM):
            opt.step()
        elif opt.perturbed:
            opt.unperturb_and_step()
        else:  # a SAM-k / LookSAM step without the ascent
            opt.skip_step()
        opt.zero_grad(set_to_none=True)

    def plain(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_backward(x, y)
        self.descend()
        return out

    def ascend(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L(w) and its gradient on this group, kept local, shared over m's workers if m spans several; perturb."""
        with self.groups.no_sync():
            out = self.forward_backward(x, y)
        if self.groups.share is not None:
            self.groups.share([p.grad for p in self.params if p.grad is not None])
        self.optimizer.perturb()
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def sam(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's two passes per group of m examples, the groups' descent gradients summed, then one descent."""
        if self.sam_every > 1 and self.step_index() % self.sam_every:
            return self.plain(x, y)
        n = self.groups.splits
        outs, held = [], []  # held: the descent gradients of the groups done so far, summed
        for j, (xj, yj) in enumerate(zip(x.chunk(n), y.chunk(n))):
            last = j == n - 1
            with replay_rng() as replay:
                outs.append(self.ascend(xj, yj))  # L(w): the loss we report
                for p, g in held:
                    p.grad = g
                replay()  # same dropout masks at w + e
                # BN running statistics from the first pass only; the last group's backward all-reduces the sum
                with frozen_bn_stats(self.model), (nullcontext() if last else self.groups.no_sync()):
                    self.forward_backward(xj, yj, 1.0 / n)
            if not last:
                held = [(p, p.grad) for p in self.params if p.grad is not None]
                self.optimizer.zero_grad(set_to_none=True)
                self.optimizer.unperturb()
        self.descend()
        if n == 1:
            return outs[0]
        return torch.stack([loss for loss, _ in outs]).mean(), torch.cat([logits for _, logits in outs])
