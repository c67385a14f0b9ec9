"""Where a run is, as every checkpoint saves it, and the running sums of the epoch in progress.

A checkpoint stores :class:`LoopState` as a plain dict (``state.pt['loop']``); a mid-epoch checkpoint adds the
epoch's sums so far (:class:`EpochSums`), so a resume skips the batches already done and reports the same epoch
loss and accuracy as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from sharpvision.train import distributed


@dataclass
class EpochSums:
    """The epoch so far, over all workers: summed loss, correct predictions, examples, seconds."""

    loss_sum: float
    correct: int
    seen: int
    elapsed: float


@dataclass
class LoopState:
    """The loop's position and running totals; what a checkpoint needs to continue exactly."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    epoch_step: int = 0  # steps done inside the current epoch (non-zero only in a mid-epoch checkpoint)
    partial: EpochSums | None = None  # that epoch's sums so far
    train_time_s: float = 0.0  # time in training steps
    wall_time_s: float = 0.0  # since the first step, evaluation included
    train_images: int = 0
    train_flops: float = 0.0
    matched_epoch: int | None = None  # the epoch whose training loss first fell below train.matched_loss

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        partial = data.get("partial")
        return cls(**{**data, "partial": EpochSums(**partial) if partial else None})

    @property
    def resumed_elapsed(self) -> float:
        """Seconds the current epoch had run before the checkpoint it was resumed from."""
        return self.partial.elapsed if self.partial else 0.0

    def mid_epoch(self, epoch_step: int, sums: EpochSums) -> LoopState:
        """This state as a checkpoint inside the epoch saves it."""
        return dataclasses.replace(self, epoch_step=epoch_step, partial=sums)

    def end_epoch(self, epoch_seconds: float) -> None:
        self.epoch += 1
        self.epoch_step, self.partial = 0, None
        self.wall_time_s += epoch_seconds


class EpochTally:
    """Loss and accuracy sums of one epoch, kept on the device and read (summed over workers) only when asked,
    so a step never waits for the host; starts from a mid-epoch checkpoint's sums (on rank 0: they are totals)."""

    def __init__(self, dist: distributed.Dist, device: torch.device, first_step: int,
                 resumed: EpochSums | None) -> None:
        self.dist, self.first_step = dist, first_step  # the global step this epoch began at
        self.sums = torch.zeros(2, device=device, dtype=torch.float64)  # loss * n, correct
        self.seen = 0
        if dist.main and resumed:
            self.sums += torch.tensor([resumed.loss_sum, resumed.correct], dtype=torch.float64, device=device)
            self.seen = resumed.seen
        self.t0, self.before = time.perf_counter(), resumed.elapsed if resumed else 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.sums[0] += loss.double() * y.numel()
        self.sums[1] += (logits.argmax(1) == y).sum()
        self.seen += y.numel()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 + self.before

    def totals(self) -> tuple[float, float, float]:
        """Loss sum, correct, examples: the epoch so far, all workers (a collective under DDP)."""
        loss_sum, correct, n = distributed.sum_all(self.dist, torch.cat([self.sums, self.sums.new_tensor([self.seen])
                                                                         ])).tolist()
        return loss_sum, correct, n

    def snapshot(self) -> EpochSums:
        loss_sum, correct, n = self.totals()
        return EpochSums(loss_sum, int(correct), int(n), self.elapsed())
