"""``finetune``: a classifier that starts from trained weights (``finetune.source``: a run, a checkpoint or a timm
weights file), all of it learning (``finetune.mode: full``) or only a new classifier on frozen features
(``linear``, a probe; without a source, the random-features baseline a probe is compared with).

A fine-tune is an ordinary training run (same loop, checkpoints, exact resume, DDP); :func:`finetune_recipe` writes
its recipe from the source run's own, so a user only names the source and the new data. The weights are read and
fitted to the new model (new head, resampled position embeddings, adapted stem) by
:mod:`sharpvision.models.finetune`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision.config import Config, ConfigError
from sharpvision.models.finetune import WEIGHT_FILES, FinetuneError, fit_source, freeze_backbone, read_source
from sharpvision.tasks.task import CLASSIFY, Task

# data fields a fine-tune keeps from its source's recipe; the rest of ``data`` starts from the defaults (the source's
# fraction, label noise or class subset describe the source's data, not the new one)
KEPT_DATA = ("batch_size", "eval_batch_size", "loader", "num_workers", "augment")


@dataclass(frozen=True)
class Finetune(Task):
    def selects(self, cfg: Config) -> bool:
        return cfg.task == CLASSIFY.name and (bool(cfg.finetune.source) or cfg.finetune.mode == "linear")

    def start(self, cfg: Config, model: nn.Module, fresh: bool) -> dict[str, Any] | None:
        """A fresh run loads its source (a resumed one has its own weights); a probe's backbone is frozen every
        time the model is built for training."""
        source = start_from_source(cfg, model) if cfg.finetune.source and fresh else None
        if cfg.finetune.mode == "linear":
            freeze_backbone(model)
        return source

    def record(self, cfg: Config, model: nn.Module, source: dict[str, Any] | None) -> dict[str, Any]:
        """Its mode, trainable parameters and source (None: a probe of random features)."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {"finetune": {"mode": cfg.finetune.mode, "trainable_params": trainable, "source": source}}


FINETUNE = Finetune("finetune", "a classifier started from a source's weights (finetune.source), fully or as a "
                    "linear probe on frozen features (finetune.mode); test accuracy")


def start_from_source(cfg: Config, model: nn.Module) -> dict[str, Any]:
    """Load ``finetune.source`` into the freshly built model; returns what the manifest records of it."""
    src = read_source(cfg.finetune.source, cfg.finetune.ema)
    if src.model_name is not None and src.model_name != cfg.model.name:
        raise FinetuneError(f"finetune.source {cfg.finetune.source}: it trained {src.model_name!r} but model.name is "
                            f"{cfg.model.name!r}; set model.name={src.model_name}")
    return {**src.info, "model": src.model_name or cfg.model.name, "adapted": fit_source(model, src, cfg.finetune)}


def finetune_recipe(source: str | Path, dataset: str | None = None, mode: str = "full",
                    recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The recipe that fine-tunes (``mode='full'``) or linear-probes (``'linear'``) ``source`` on ``dataset``.

    It starts from ``recipe`` when given, else from the source run's own recipe (its model, optimizer, schedule and
    training settings; data reset but for the batch and loader fields), else (a bare weights file) from the defaults,
    where ``model.name=...`` must name the architecture. ``overrides`` are applied last.
    """
    base, name = _base(Path(source).expanduser(), recipe, overrides or [])
    if recipe is None:
        kept = {k: base["data"][k] for k in KEPT_DATA}
        base["data"] = {**kept, "dataset": base["data"]["dataset"]}
        base["adv"] = {}
        base["task"], base["contrastive"] = CLASSIFY.name, {}  # a contrastive source is fine-tuned as a classifier
    if dataset is not None:
        base["data"]["dataset"] = dataset
    label = base["data"].get("dataset", "fashion_mnist")
    base["name"] = f"{name}-{'probe' if mode == 'linear' else 'ft'}-{label}"
    base["finetune"] = {**base.get("finetune", {}), "source": str(source), "mode": mode}
    return svconfig.from_dict(svconfig.apply_overrides(base, overrides or []))


def _base(source: Path, recipe: str | Path | None, overrides: list[str]) -> tuple[dict[str, Any], str]:
    """The recipe to start from as a dict, and the source's name for the new run's name."""
    if not source.exists():
        raise FinetuneError(f"finetune source {source}: no such file or directory")
    weights_file = source.is_file() and source.suffix in WEIGHT_FILES and not (source.parent / "manifest.json").exists()
    if recipe is not None:
        return svconfig.load(recipe).to_dict(), source.stem if weights_file else _run_name(source)
    if weights_file:
        if not any(o.startswith("model.name=") for o in overrides):
            raise ConfigError(f"finetune source {source}: a weights file does not say which model it is; give "
                              "model.name=NAME (a sharpvision or timm name), or --recipe")
        return Config().to_dict(), source.stem
    manifest = json.loads((ckpt.resolve(source) / "manifest.json").read_text())
    return svconfig.with_defaults(svconfig.upgrade(manifest["config"])), _run_name(source)


def _run_name(source: Path) -> str:
    """runs/vit_sam or runs/vit_sam/checkpoints/step_N -> vit_sam."""
    folder = ckpt.resolve(source)
    return folder.parent.parent.name if folder.parent.name == "checkpoints" else folder.name
