"""Evaluate a run directory or a checkpoint file on its test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision import data as svdata
from sharpvision import models
from sharpvision.evaluate.accuracy import evaluate
from sharpvision.runtime import Runtime


def evaluate_run(target: str | Path, ema: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """Test loss and accuracy of ``target`` (a run directory or a checkpoint folder) with its own recipe."""
    saved = ckpt.load(target)
    cfg = svconfig.from_dict(svconfig.apply_overrides(saved.config, overrides or []))
    rt = Runtime.from_config(cfg)
    bundle = svdata.build_datasets(cfg.data)
    model = models.from_config(cfg, bundle)
    if ema:
        if saved.ema is None:
            raise ckpt.CheckpointError(f"checkpoint {saved.path}: the run kept no EMA weights (train.ema_decay was "
                                       "off)")
        weights = {k.removeprefix("module."): v for k, v in saved.ema.items() if k.startswith("module.")}
    else:
        weights = saved.model
    ckpt.fit(model, weights, saved.path, f"model {cfg.model.name!r}")
    model.to(rt.device)
    metrics = evaluate(model, svdata.eval_loader(bundle.test, cfg.data), rt.device, rt.autocast)
    return {"checkpoint": str(saved.path), "model": cfg.model.name, "epoch": saved.manifest["epoch"], "ema": ema,
            "test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"], "n": metrics["n"]}
