"""A recipe's model, sized by its data: what training, evaluation and analysis all build."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from sharpvision.config import Config, ConfigError
from sharpvision.models.contrastive import ContrastiveNet
from sharpvision.models.prune import shrink_to
from sharpvision.models.registry import create


class DataShape(Protocol):
    """What the model needs to know of the data (a :class:`sharpvision.data.DataBundle` has it)."""

    num_classes: int
    img_size: int
    in_chans: int


def from_config(cfg: Config, data: DataShape) -> nn.Module:
    """The recipe's model for the data's classes, channels and size; a rejected argument is a ConfigError."""
    clash = sorted({"drop_rate", "drop_path_rate", "num_classes", "img_size", "in_chans"} & set(cfg.model.kwargs))
    if clash:
        raise ConfigError(f"model.kwargs: {', '.join(clash)} must not be set here; use model.drop_rate / "
                          "model.drop_path_rate (the data decides classes, channels and size)")
    # drop rates only when asked for, so timm models without stochastic depth (vgg, densenet) still build
    drops = {k: v for k, v in (("drop_rate", cfg.model.drop_rate), ("drop_path_rate", cfg.model.drop_path_rate)) if v}
    classes = 0 if cfg.task == "contrastive" else data.num_classes  # contrastive: features, then the projection head
    try:
        model = create(cfg.model.name, num_classes=classes, img_size=data.img_size, in_chans=data.in_chans,
                       **drops, **cfg.model.kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:  # timm checks arguments with asserts
        raise ConfigError(f"model: {cfg.model.name!r} rejects its arguments ({type(e).__name__}: {e}); check "
                          "model.kwargs, model.drop_rate and model.drop_path_rate") from None
    model = shrink_to(model, cfg.model.widths) if cfg.model.widths else model  # a pruned run's recipe
    return ContrastiveNet(model, cfg.contrastive) if cfg.task == "contrastive" else model
