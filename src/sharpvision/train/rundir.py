"""A run directory: resolved config, checkpoints, metrics, summary.

    runs/<name>/config.yaml            the resolved recipe (what ran, every default filled in)
    runs/<name>/checkpoints/last.pt    weights + everything needed to resume, written atomically
    runs/<name>/metrics.jsonl          one JSON record per log interval and per epoch
    runs/<name>/tensorboard/           TensorBoard events
    runs/<name>/summary.json           final figures
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from sharpvision import config as svconfig
from sharpvision.config import Config
from sharpvision.train import checkpoint as ckpt


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (exists without --resume, config mismatch, ...)."""


@dataclass
class RunDir:
    path: Path
    cfg: Config

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @classmethod
    def open(cls, path: str | Path, cfg: Config, resume: bool) -> RunDir:
        """Create a new run directory, or reopen one to resume; never silently overwrite finished work.

        A directory whose run never finished an epoch (no checkpoint: it failed while starting, say) holds
        nothing to lose and is reused as new.
        """
        path = Path(path)
        config_file = path / "config.yaml"
        if config_file.exists() and (path / "checkpoints" / "last.pt").exists():
            if not resume:
                raise RunDirError(f"run directory {path} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
            saved = yaml.safe_load(config_file.read_text())
            diff = _diff(saved, cfg.to_dict())
            if diff:
                raise RunDirError(f"--resume: the recipe differs from {config_file} in {', '.join(diff)}; "
                                  "resume with the same recipe or start a new run directory")
        path.mkdir(parents=True, exist_ok=True)
        svconfig.dump(cfg, config_file)
        return cls(path, cfg)

    def save(self, model: nn.Module, optimizer: Any, scheduler: Any, ema: nn.Module | None,
             state: dict[str, Any]) -> None:
        ckpt.atomic_save({
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "state": dict(state),
            "rng": ckpt.rng_state(),
            "config": self.cfg.to_dict(),
            "torch": str(torch.__version__),
        }, self.checkpoint)

    def restore(self, model: nn.Module, optimizer: Any, scheduler: Any, ema: nn.Module | None) -> dict[str, Any]:
        """Load the checkpoint into the live objects; tensors go to CPU first (RNG states must stay there) and
        ``load_state_dict`` moves weights and optimizer state to their parameters' device."""
        data = ckpt.load(self.checkpoint, map_location="cpu")
        try:
            model.load_state_dict(data["model"])
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"checkpoint {self.checkpoint}: does not fit model "
                                       f"{self.cfg.model.name!r}: {e}") from None
        optimizer.load_state_dict(data["optimizer"])
        scheduler.load_state_dict(data["scheduler"])
        if ema is not None and data["ema"] is not None:
            ema.load_state_dict(data["ema"])
        ckpt.set_rng_state(data["rng"])
        return data["state"]

    def last_epoch_record(self) -> dict[str, Any]:
        records = [json.loads(line) for line in (self.path / "metrics.jsonl").read_text().splitlines() if line]
        return [r for r in records if "train_loss" in r][-1]

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.path / "summary.json")


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} ({a!r} -> {b!r})"]
