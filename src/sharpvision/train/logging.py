"""Metrics to ``metrics.jsonl`` and TensorBoard, both safe to resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricLogger:
    """Appends one JSON record per line and mirrors numeric fields to TensorBoard.

    On resume, records past the checkpoint (after its ``step``, or the epoch record of an epoch it ended inside)
    are dropped and TensorBoard purges events after ``step``, so the log reads as one uninterrupted run.
    ``enabled=False`` (workers other than rank 0) writes nothing.
    """

    def __init__(self, run_dir: Path, completed_epochs: int = 0, step: int = 0, tensorboard: bool = True,
                 enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        if enabled and self.path.exists():
            records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            kept = [r for r in records if r.get("epoch", 0) < completed_epochs or (
                r.get("epoch", 0) == completed_epochs and r.get("step", 0) <= step and "train_loss" not in r)]
            tmp = self.path.with_name(".metrics.jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.path)
        self.writer = None
        if tensorboard and enabled:
            from torch.utils.tensorboard import SummaryWriter
            # events after the checkpoint's step (logged by the interrupted attempt) are dropped; those at it stay
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step + 1)

    def log(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _clean(v) for k, v in record.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
