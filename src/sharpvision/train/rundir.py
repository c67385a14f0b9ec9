"""A run directory: resolved config, checkpoints, metrics, summary.

    runs/<name>/config.yaml            the resolved recipe (what ran, every default filled in)
    runs/<name>/checkpoints/           the newest train.keep_checkpoints checkpoints and ``latest`` (see checkpoint.py)
    runs/<name>/metrics.jsonl          one JSON record per log interval and per epoch
    runs/<name>/tensorboard/           TensorBoard events
    runs/<name>/summary.json           final figures

Under torchrun only rank 0 writes here; every rank reads (multi-node runs need --out on a shared filesystem).
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import timm
import torch
import yaml
from torch import nn

import sharpvision
from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision.config import Config
from sharpvision.errors import SharpvisionError

# fields a resumed run may change: where the data lives and how the run is observed, not what it computes
RESUME_MAY_CHANGE = ("data.root", "data.num_workers", "train.threads", "train.log_every", "train.checkpoint_every",
                     "train.keep_checkpoints", "train.dist_timeout_s")


class RunDirError(SharpvisionError, RuntimeError):
    """The run directory cannot be used as asked (exists without --resume, config mismatch, ...)."""


@dataclass
class RunDir:
    path: Path
    cfg: Config
    writes: bool = True  # False on ranks other than 0
    config_saved: bool = False  # config.yaml holds this run's recipe (a resume writes it at its first checkpoint)
    source: dict[str, Any] | None = None  # the weights a fine-tune started from (finetune.source), for the manifest

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def has_checkpoint(self) -> bool:
        return ckpt.exists(self.checkpoints)

    @classmethod
    def open(cls, path: str | Path, cfg: Config, resume: bool, writes: bool = True) -> RunDir:
        """Create a new run directory, or reopen one to resume; never silently overwrite finished work.

        A directory whose run never wrote a checkpoint (it failed while starting, say) holds nothing to lose and
        is reused as new.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run directory {path} is a file; choose another --out")
        config_file = path / "config.yaml"
        run = cls(path, cfg, writes)
        if run.has_checkpoint:
            if not resume:
                raise RunDirError(f"run directory {path} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
            try:
                saved = yaml.safe_load(config_file.read_text())
            except (OSError, yaml.YAMLError) as e:
                raise RunDirError(f"--resume: cannot read {config_file} ({e})") from None
            _refuse_changes(saved, cfg, str(config_file))
            return run  # config.yaml takes the allowed changes at the first checkpoint, once the run works
        checkpoints = run.checkpoints.is_dir() and any(not p.name.startswith(".") for p in run.checkpoints.iterdir())
        results = (["summary.json"] if (path / "summary.json").exists() else []) + (["checkpoints/"] if checkpoints
                                                                                      else [])
        results += ["epoch records in metrics.jsonl"] if _has_epoch_records(path / "metrics.jsonl") else []
        if results:
            raise RunDirError(f"run directory {path} holds results ({', '.join(results)}) but no complete checkpoint "
                              f"({path / 'checkpoints' / ckpt.LATEST} is missing), so it can be neither resumed nor "
                              "overwritten; choose another --out, or move it away")
        if writes:
            path.mkdir(parents=True, exist_ok=True)
            svconfig.dump(cfg, config_file)
            run.config_saved = True
        return run

    def save(self, model: nn.Module, optimizer: Any, scheduler: Any, ema: nn.Module | None,
             loop_state: dict[str, Any], rng: list[dict[str, Any]]) -> None:
        """Checkpoint the run; ``rng`` holds every rank's RNG states (rank order). Only the writing rank calls it."""
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "loop": dict(loop_state),
                 "rng": rng}
        manifest = {"epoch": loop_state["epoch"], "model": self.cfg.model.name, "world_size": len(rng),
                    "versions": versions(), "config": self.cfg.to_dict(),
                    **({"finetune": self.source} if self.source else {})}
        if not self.config_saved:  # a resume's allowed changes (data.root, ...), once it has run
            svconfig.dump(self.cfg, self.path / "config.yaml")
            self.config_saved = True
        ckpt.save(self.checkpoints, loop_state["step"], model.state_dict(),
                  ema.state_dict() if ema is not None else None, state, manifest, self.cfg.train.keep_checkpoints)

    def restore(self, model: nn.Module, optimizer: Any, scheduler: Any, ema: nn.Module | None,
                rank: int = 0) -> dict[str, Any]:
        """Load the newest checkpoint into the live objects and this rank's RNG; returns the loop state.

        Tensors go to CPU first (RNG states must stay there); ``load_state_dict`` moves weights and optimizer
        state to their parameters' device.
        """
        data = ckpt.load(self.checkpoints, map_location="cpu")
        _refuse_changes(data.config, self.cfg, f"checkpoint {data.path}")
        ckpt.fit(model, data.model, data.path / "model.safetensors", f"model {self.cfg.model.name!r}")
        try:
            optimizer.load_state_dict(data.state["optimizer"])
            scheduler.load_state_dict(data.state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"checkpoint {data.path / 'state.pt'}: the optimizer state does not fit "
                                       f"({e})") from None
        if ema is not None and data.ema is not None:
            ckpt.fit(ema, data.ema, data.path / "ema.safetensors", "the EMA model")
        self.source = data.manifest.get("finetune")  # later checkpoints keep recording it
        rng = data.state["rng"]
        if rank < len(rng):
            ckpt.set_rng_state(rng[rank])
        else:  # more workers than when saved: order and weights are exact, this rank's random draws are new
            warnings.warn(f"checkpoint {data.path}: saved by {len(rng)} process(es); rank {rank} starts fresh "
                          "random streams (dropout, augmentation), so the resumed run is not bit-exact", stacklevel=2)
        return data.state["loop"]

    def last_epoch_record(self) -> dict[str, Any]:
        records = [json.loads(line) for line in (self.path / "metrics.jsonl").read_text().splitlines() if line]
        return [r for r in records if "train_loss" in r][-1]

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.path / "summary.json")


def _has_epoch_records(metrics: Path) -> bool:
    """Whether a run logged a finished epoch here (a run that died before its first checkpoint has none)."""
    if not metrics.is_file():
        return False
    return any('"train_loss"' in line for line in metrics.read_text(errors="replace").splitlines())


def versions() -> dict[str, str]:
    """What wrote a checkpoint, recorded in its manifest."""
    return {"sharpvision": sharpvision.__version__, "torch": str(torch.__version__), "timm": timm.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def _refuse_changes(saved: Any, cfg: Config, source: str) -> None:
    if isinstance(saved, dict):  # a run saved before a field's rename, or before a field existed
        saved = svconfig.with_defaults(svconfig.upgrade(saved))
    allowed = tuple(f"{f} (" for f in RESUME_MAY_CHANGE)
    changed = [d for d in svconfig.diff(saved, cfg.to_dict()) if not d.startswith(allowed)]
    if changed:
        raise RunDirError(f"--resume: the recipe differs from {source} in {', '.join(changed)}; resume with the same "
                          "recipe or start a new run directory")
