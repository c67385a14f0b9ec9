"""Start a model from trained weights: read a source (our run or checkpoint, or a local timm weights file), fit it
to the new data (a new classifier, position embeddings resampled, stem channels adapted), freeze all but the
classifier for a linear probe.

Chen et al. (Sec. 4, Table 5) fine-tune SAM-trained ViTs on new datasets; this is what a user needs to ask the same
of their own runs (the ``finetune`` task, :mod:`sharpvision.tasks.finetune`). Nothing is ever downloaded: a source is
a path on disk.
"""

from __future__ import annotations

import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from timm.layers import resample_abs_pos_embed
from timm.models import load_state_dict as timm_load_state_dict
from timm.models._manipulate import adapt_input_conv
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision.config import FinetuneConfig
from sharpvision.models.contrastive import BACKBONE

WEIGHT_FILES = (".safetensors", ".pth", ".pt", ".bin")


class FinetuneError(ckpt.CheckpointError):
    """A source cannot be read or does not fit the model; the message names the source and the mismatch."""


@dataclass
class SourceWeights:
    """A source's weights and what the run directory's manifest records about them."""

    weights: dict[str, torch.Tensor]
    model_name: str | None  # the source run's model; None for a bare weights file (its name is not stored)
    info: dict[str, Any]  # path, kind, epoch / step, sha256 of the weights file


def read_source(source: str | Path, ema: bool = False) -> SourceWeights:
    """Weights from a run directory or checkpoint folder (verified, with its recipe's model name), or from a timm
    weights file (safetensors, or a .pth read with ``weights_only=True``: a file never runs code)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FinetuneError(f"finetune.source {source}: no such file or directory")
    if path.is_dir() or (path.parent / "manifest.json").is_file():
        saved = ckpt.load(path)
        if ema and saved.ema is None:
            raise FinetuneError(f"finetune.ema: the source {saved.path} kept no EMA weights (train.ema_decay was off)")
        file = "ema.safetensors" if ema else "model.safetensors"
        info = {"kind": "sharpvision checkpoint", "path": str(saved.path.resolve()),
                "epoch": saved.manifest.get("epoch"), "step": saved.manifest.get("step"),
                "sha256": saved.manifest["sha256"][file], "ema": ema}
        weights = saved.weights(ema)
        if {k.split(".", 1)[0] for k in weights} == {BACKBONE.rstrip("."), "proj"}:  # a ContrastiveNet's weights:
            weights = {k.removeprefix(BACKBONE): v for k, v in weights.items() if k.startswith(BACKBONE)}  # backbone
            info["task"] = saved.config.get("task")  # only; the projection head stays behind
        return SourceWeights(weights, saved.config["model"]["name"], info)
    if path.suffix not in WEIGHT_FILES:
        raise FinetuneError(f"finetune.source {source}: not a run directory, a checkpoint folder or a weights file "
                            f"({', '.join(WEIGHT_FILES)})")
    try:
        weights = timm_load_state_dict(str(path), use_ema=ema, weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise FinetuneError(f"finetune.source {source}: cannot be read as weights ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise FinetuneError(f"finetune.source {source}: holds no state dict of tensors")
    info = {"kind": "weights file", "path": str(path.resolve()), "sha256": ckpt.file_sha256(path), "ema": ema}
    return SourceWeights(weights, None, info)


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the model's classifier (``head``, ``fc``, ``head.fc``), found through timm's
    ``get_classifier``, so it holds for any timm model."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, module in model.named_modules():
        if head is not None and module is head and name:
            return name
    raise FinetuneError(f"{type(model).__name__}: no classifier found (timm's get_classifier()), so it cannot get a "
                        "new head")


def fit_source(model: nn.Module, src: SourceWeights, cfg: FinetuneConfig) -> dict[str, list[str]]:
    """Load ``src`` into ``model`` adapted to it; returns what was adapted (recorded in the manifest).

    ``head='new'`` keeps the model's fresh classifier; ``'keep'`` needs the source's classifier to fit. A ViT's
    position embeddings are resampled (bicubic, timm's rule) to the new patch grid; the first convolution is
    adapted to the new channel count (1 -> 3 repeats the filter / 3, 3 -> 1 sums it: timm's rule). Anything else
    that does not fit is a FinetuneError naming the tensors.
    """
    own = model.state_dict()
    prefix = classifier_prefix(model) + "."
    weights = dict(src.weights)
    adapted: dict[str, list[str]] = {"new": [], "resampled": [], "channels": []}
    if cfg.head == "new":
        weights = {k: v for k, v in weights.items() if not k.startswith(prefix)}
        adapted["new"] = [k for k in own if k.startswith(prefix)]
        weights.update({k: own[k] for k in adapted["new"]})
    else:
        shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k.startswith(prefix) and k in weights and weights[k].shape != own[k].shape]
        if shapes:
            raise FinetuneError(f"finetune.head: 'keep' needs the source's classifier to fit this data's classes "
                                f"({shapes[0]}); use finetune.head=new")
    first_conv = next((k for k, v in own.items() if v.ndim == 4), None)
    for key, target in own.items():
        have = weights.get(key)
        if have is None or have.shape == target.shape:
            continue
        if key.endswith("pos_embed") and have.ndim == 3 and hasattr(model, "patch_embed"):
            prefix_tokens = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
            weights[key] = resample_abs_pos_embed(have, list(model.patch_embed.grid_size),
                                                  num_prefix_tokens=prefix_tokens)
            adapted["resampled"].append(key)
        elif key == first_conv and have.ndim == 4 and have.shape[:1] + have.shape[2:] == target.shape[:1] + \
                target.shape[2:]:
            weights[key] = adapt_input_conv(target.shape[1], have, base_chans=have.shape[1])
            adapted["channels"].append(key)
    try:
        ckpt.fit(model, weights, Path(src.info["path"]), f"model {type(model).__name__} built by this recipe")
    except ckpt.CheckpointError as e:
        hint = (" (a Mixer's token-mixing layers are sized for the source's image size: set data.img_size to it)"
                if "mlp_tokens" in str(e) else "")
        raise FinetuneError(f"finetune.source: {e}{hint}") from None
    return adapted


def freeze_backbone(model: nn.Module) -> list[str]:
    """A linear probe: every parameter outside the classifier stops learning, and every module outside it stays in
    eval mode even when the loop calls ``model.train()`` (BatchNorm keeps the source's statistics, dropout is off),
    so the probe reads fixed features. Returns the trainable parameter names."""
    prefix = classifier_prefix(model)
    parts = prefix.split(".")
    ancestors = {".".join(parts[:i]) for i in range(len(parts))}  # "", "head" for "head.fc": they hold the head
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefix + "."))
    for name, module in model.named_modules():
        if name not in ancestors and name != prefix and not name.startswith(prefix + "."):
            module.train = types.MethodType(_stay_eval, module)
            module.training = False
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen module: eval mode whatever is asked."""
    return nn.Module.train(self, False)

