"""Checkpoints that never lose finished work and never run code from a file.

One checkpoint is a folder, written under a temporary name and renamed into place only when complete::

    checkpoints/step_00001234/model.safetensors   weights (safetensors: tensors only, nothing to execute)
    checkpoints/step_00001234/ema.safetensors     EMA weights, when the run keeps them
    checkpoints/step_00001234/state.pt            optimizer, scheduler, RNG states, loop position; loaded with
                                                  torch.load(weights_only=True)
    checkpoints/step_00001234/manifest.json       config, versions, step, and the sha256 of each file above
    checkpoints/latest                            the name of the newest complete checkpoint (renamed into place;
                                                  without it, the newest folder with a manifest)

A SIGKILL at any moment leaves either the previous ``latest`` or the new one, never a half-written file behind
it; reading verifies every checksum, so a truncated or altered file is a clear error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sharpvision.errors import SharpvisionError

FORMAT = "sharpvision-checkpoint/1"
LATEST = "latest"
PREFIX = "step_"


class CheckpointError(SharpvisionError, RuntimeError):
    """A checkpoint is missing, truncated or belongs to another run; the message names the file."""


@dataclass
class Checkpoint:
    """What a checkpoint holds, read back and verified."""

    path: Path  # the checkpoint folder
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]  # optimizer, scheduler, rng, loop state
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def weights(self, ema: bool = False) -> dict[str, torch.Tensor]:
        """The model's weights, or its EMA's as the plain model's (they are saved as torch's AveragedModel: the
        model under ``module.``, beside ``n_averaged``)."""
        if not ema:
            return self.model
        if self.ema is None:
            raise CheckpointError(f"checkpoint {self.path}: the run kept no EMA weights (train.ema_decay was off)")
        return {k.removeprefix("module."): v for k, v in self.ema.items() if k.startswith("module.")}


def save(folder: str | Path, step: int, model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None,
         state: dict[str, Any], manifest: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` into ``folder``, point ``latest`` at it, keep the ``keep`` newest; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    try:
        files = {"model.safetensors": lambda p: save_file(_plain_tensors(model), p)}
        if ema is not None:
            files["ema.safetensors"] = lambda p: save_file(_plain_tensors(ema), p)
        files["state.pt"] = lambda p: torch.save(state, p)
        sums = {}
        for name, write in files.items():
            write(str(tmp / name))
            sums[name] = _fsync_and_hash(tmp / name)
        manifest = {"format": FORMAT, "step": step, **manifest, "sha256": sums}
        _write_synced(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        if final.exists():  # left by an attempt that died before moving ``latest`` to it: not the newest good one
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_synced(folder / f".{LATEST}.tmp", final.name + "\n")
    os.replace(folder / f".{LATEST}.tmp", folder / LATEST)
    _fsync_dir(folder)
    _prune(folder, keep, final)
    return final


def resolve(target: str | Path) -> Path:
    """The checkpoint folder meant by ``target``: a run directory, its ``checkpoints/``, a checkpoint folder or
    a file inside one."""
    target = Path(target)
    if not target.exists():
        raise CheckpointError(f"checkpoint {target}: no such file or directory")
    if target.is_file() and (target.parent / "manifest.json").exists() or target.name == "manifest.json":
        return target.parent
    if (target / "manifest.json").exists() or target.name.startswith(PREFIX):
        return target
    folder = target / "checkpoints" if (target / "checkpoints").is_dir() else target
    pointer = folder / LATEST
    if not pointer.is_file():
        if done := list_checkpoints(folder):  # killed between renaming its first checkpoint and writing latest
            return done[-1]
        if target.is_file():
            raise CheckpointError(f"checkpoint {target}: not a sharpvision checkpoint (expected a run directory or "
                                  "a checkpoint folder checkpoints/step_NNNNNNNN holding manifest.json)")
        raise CheckpointError(f"checkpoint {target}: no checkpoint here (no {pointer}); a run writes one at the end "
                              "of each epoch and every train.checkpoint_every steps")
    return folder / pointer.read_text().strip()


def exists(folder: str | Path) -> bool:
    """Whether ``folder`` (a run's ``checkpoints/``) has a complete checkpoint to resume from."""
    return (Path(folder) / LATEST).is_file() or bool(list_checkpoints(folder))


def load(target: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a checkpoint (see :func:`resolve` for ``target``); tensors only, nothing executes."""
    path = resolve(target)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise CheckpointError(f"checkpoint {path}: incomplete, {manifest_file.name} is missing (the checkpoint "
                              "was not finished; resume from an earlier one)")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {manifest_file}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {manifest_file}: not a {FORMAT} manifest")
    for name, digest in manifest["sha256"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {file}: missing")
        if file_sha256(file) != digest:
            raise CheckpointError(f"checkpoint {file}: checksum mismatch, the file is truncated or altered "
                                  "since it was written")
    try:
        model = load_file(str(path / "model.safetensors"), device=str(map_location))
        ema = (load_file(str(path / "ema.safetensors"), device=str(map_location))
               if (path / "ema.safetensors").exists() else None)
        state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(e).__name__}: {e})") from None
    return Checkpoint(path, model, ema, state, manifest)


def fit(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path, what: str) -> None:
    """``module.load_state_dict(weights)``, or a CheckpointError that names the file and the first mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in weights and weights[k].shape != v.shape]
    if missing or extra or shapes:
        parts = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra),
                                      ("shape (checkpoint vs model)", shapes)) if items]
        raise CheckpointError(f"checkpoint {where}: does not fit {what} ({'; '.join(parts)})")
    module.load_state_dict(weights)


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoint folders in ``folder``, oldest first."""
    return sorted(p for p in Path(folder).glob(f"{PREFIX}*") if p.is_dir() and (p / "manifest.json").exists())


def rng_state() -> dict[str, Any]:
    """Every RNG this process draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
    }
    if torch.cuda.is_initialized():  # this process's device only: touching the others would open contexts there
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    *internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _plain_tensors(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies: safetensors refuses shared storage and strided (channels_last) views."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (what manifests record)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_and_hash(path: Path) -> str:
    with path.open("rb+") as f:
        os.fsync(f.fileno())
    return file_sha256(path)


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(folder: Path, keep: int, newest: Path) -> None:
    """Keep the ``keep`` newest checkpoints up to ``newest``; delete older ones, temp folders of dead attempts and
    checkpoints past ``newest`` (written by an attempt that died before pointing ``latest`` at them)."""
    for stale in folder.glob(f".{PREFIX}*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    done = [p for p in folder.glob(f"{PREFIX}*") if p.is_dir()]
    kept = sorted(p for p in done if p.name <= newest.name)[-keep:]
    for old in done:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
