"""A recipe's network, sized by its data: the classifier (or, with ``num_classes=0``, the features) that each task
(:mod:`sharpvision.tasks`) builds its model from."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from sharpvision.config import Config, ConfigError
from sharpvision.models.prune import shrink_to
from sharpvision.models.registry import create


class DataShape(Protocol):
    """What the model needs to know of the data (a :class:`sharpvision.data.DataBundle` has it)."""

    num_classes: int
    img_size: int
    in_chans: int


def from_config(cfg: Config, data: DataShape, num_classes: int | None = None) -> nn.Module:
    """The recipe's network for the data's channels and size, with a classifier for the data's classes (or
    ``num_classes``; 0: none, the network returns features); cut to ``model.widths`` for a pruned run. A rejected
    argument is a ConfigError."""
    clash = sorted({"drop_rate", "drop_path_rate", "num_classes", "img_size", "in_chans"} & set(cfg.model.kwargs))
    if clash:
        raise ConfigError(f"model.kwargs: {', '.join(clash)} must not be set here; use model.drop_rate / "
                          "model.drop_path_rate (the data decides classes, channels and size)")
    # drop rates only when asked for, so timm models without stochastic depth (vgg, densenet) still build
    drops = {k: v for k, v in (("drop_rate", cfg.model.drop_rate), ("drop_path_rate", cfg.model.drop_path_rate)) if v}
    classes = data.num_classes if num_classes is None else num_classes
    try:
        model = create(cfg.model.name, num_classes=classes, img_size=data.img_size, in_chans=data.in_chans,
                       **drops, **cfg.model.kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:  # timm checks arguments with asserts
        raise ConfigError(f"model: {cfg.model.name!r} rejects its arguments ({type(e).__name__}: {e}); check "
                          "model.kwargs, model.drop_rate and model.drop_path_rate") from None
    return shrink_to(model, cfg.model.widths) if cfg.model.widths else model  # a pruned run's recipe
