"""Open a trained run: the one way ``eval``, ``analyze`` and ``prune`` load a run directory or checkpoint folder.

:func:`open_run` reads the checkpoint (:mod:`sharpvision.checkpoint` verifies it), applies the caller's overrides to
its recipe, rebuilds the model its task (:mod:`sharpvision.tasks`) trained, with the run's seed so the
initialisation is training's, and loads the weights. Every refusal comes before the data is read or a model built,
one line naming the culprit: no checkpoint, an override that changes the model, a task with no classifier, EMA
weights the run did not keep; weights that do not fit name their tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision import data as svdata
from sharpvision.runtime import Runtime, device_name, seeded
from sharpvision.tasks import Task, task_of

MODEL_SECTIONS = ("model", "task", "contrastive")  # the recipe fields that decide which weights a model holds


@dataclass
class Run:
    """A trained run opened for use: its model with the checkpoint's weights (eval mode, on its device), its recipe
    and task, its data and runtime, and the checkpoint itself (path, manifest)."""

    saved: ckpt.Checkpoint
    cfg: svconfig.Config
    task: Task
    rt: Runtime
    bundle: svdata.DataBundle
    model: nn.Module
    ema: bool  # the model holds the run's EMA weights
    init: nn.Module | None = None  # the model as training initialised it (``keep_init``), on the device

    @property
    def run_dir(self) -> Path:
        """runs/NAME/checkpoints/step_N -> runs/NAME (where ``eval/`` and ``analysis/`` go)."""
        return self.saved.path.parent.parent

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def epoch(self) -> int:
        return self.saved.manifest["epoch"]

    def header(self, command: str | None) -> dict[str, Any]:
        """What a result file records about where it came from."""
        return {"checkpoint": str(self.saved.path), "model": self.cfg.model.name, "epoch": self.epoch, "ema": self.ema,
                "device": device_name(self.rt.device), "torch": torch.__version__, "command": command}


def open_run(target: str | Path, ema: bool = False, overrides: Sequence[str] = (), purpose: str = "evaluate",
             keep_init: bool = False) -> Run:
    """The run of ``target`` (a run directory: its newest checkpoint; or a checkpoint folder) with its own recipe
    and ``overrides`` of its data and runtime (``data.root=...``); its EMA weights with ``ema``; also its
    initialisation with ``keep_init``. ``purpose`` ("evaluate", "analyse", "prune") words the refusal of a run
    without a classifier."""
    saved = ckpt.load(target)
    cfg = svconfig.from_dict(svconfig.apply_overrides(saved.config, list(overrides)))
    _check_overrides(saved, cfg, overrides)
    task = task_of(cfg)
    if not task.evaluable:
        raise ckpt.CheckpointError(f"{target}: {task.lacks} to {purpose}; probe or fine-tune it first "
                                   f"(sharpvision finetune {target} --mode linear)")
    weights = saved.weights(ema)  # refused here when the run kept no EMA weights
    rt, bundle, model = build_initial(cfg)
    init = copy.deepcopy(model) if keep_init else None
    ckpt.fit(model, weights, saved.path, f"model {cfg.model.name!r}")
    return Run(saved, cfg, task, rt, bundle, model, ema, init)


def build_initial(cfg: svconfig.Config) -> tuple[Runtime, svdata.DataBundle, nn.Module]:
    """The runtime, data and model (eval mode, on its device) as training draws them for ``cfg.seed``: the model
    holds the run's initial weights, with no checkpoint needed; the caller's random streams are kept."""
    rt, task = Runtime.from_config(cfg), task_of(cfg)
    with seeded(cfg.seed):
        bundle = task.build_data(cfg)
        model = task.build_model(cfg, bundle).eval()
    return rt, bundle, model.to(rt.device)


def _check_overrides(saved: ckpt.Checkpoint, cfg: svconfig.Config, overrides: Sequence[str]) -> None:
    """Overrides may move the data or change the runtime, not the model the weights were trained as."""
    touching = [o for o in overrides if o.split("=", 1)[0].split(".", 1)[0].strip() in MODEL_SECTIONS]
    if not touching:
        return
    trained = svconfig.from_dict(saved.config)
    if any(getattr(trained, s) != getattr(cfg, s) for s in MODEL_SECTIONS):
        raise ckpt.CheckpointError(f"override {touching[0]!r} changes the model: checkpoint {saved.path} holds "
                                   f"{trained.model.name!r} as trained and does not fit model {cfg.model.name!r} as "
                                   "overridden; override the data or the runtime only")
