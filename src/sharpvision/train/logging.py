"""Metrics to ``metrics.jsonl`` and TensorBoard, both safe to resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricLogger:
    """Appends one JSON record per line and mirrors numeric fields to TensorBoard.

    On resume, records past the last checkpoint (``epoch > completed_epochs``) are dropped and
    TensorBoard purges events after ``step``, so the log reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, completed_epochs: int = 0, step: int = 0, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("epoch", 0) < completed_epochs]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # events after the checkpoint's step (logged by the interrupted attempt) are dropped; those at it stay
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step + 1)

    def log(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
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
