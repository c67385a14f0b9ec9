"""``contrastive``: SimCLR pre-training (Chen et al. 2020). Two augmented views of each image, a projection head
on a classifier-less backbone, NT-Xent as cross-entropy on the pair logits (:mod:`sharpvision.models.contrastive`),
so SAM's step and the loop need no change. Its test figure is the kNN accuracy of its features; it has no
classifier to evaluate until a probe or fine-tune gives it one (``sharpvision finetune RUN --mode linear``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sharpvision import data as svdata
from sharpvision import models
from sharpvision.config import Config, ConfigError
from sharpvision.models.contrastive import ContrastiveNet, pair_targets
from sharpvision.models.recipe import DataShape
from sharpvision.tasks.task import Task


@dataclass(frozen=True)
class Contrastive(Task):
    def build_data(self, cfg: Config) -> svdata.DataBundle:
        """Every training example is two views (B x 2 x C x H x W); test and val stay single labelled images."""
        return svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing, contrastive=cfg.contrastive)

    def build_model(self, cfg: Config, data: DataShape) -> nn.Module:
        """The recipe's backbone without a classifier (features), under the projection head."""
        return ContrastiveNet(models.from_config(cfg, data, num_classes=0), cfg.contrastive)

    def start(self, cfg: Config, model: nn.Module, fresh: bool) -> dict[str, Any] | None:
        if cfg.finetune.source:  # fine-tuning fits a classifier; continuing pre-training from weights is not built
            raise ConfigError("finetune.source cannot be used with task: contrastive (a fine-tune trains a "
                              "classifier; fine-tune the pre-trained run instead: sharpvision finetune RUN)")
        return None

    def targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each view's positive: the other view of its image (the labels are not used)."""
        return pair_targets(2 * len(x), x.device)

    def label_smoothing(self, cfg: Config, mixup: bool) -> float:
        """None: NT-Xent's targets are each view's other view, and smoothing would put weight on the masked (-inf)
        self-similarity, an infinite loss."""
        return 0.0

    def notes(self, cfg: Config) -> list[str]:
        """Shared recipes (micro.yaml sets label smoothing 0.1) still pre-train as written, with this said once."""
        if not cfg.train.label_smoothing:
            return []
        return [f"note: train.label_smoothing={cfg.train.label_smoothing:g} is not applied to the contrastive "
                "(NT-Xent) loss; it smooths class labels, which pre-training does not use"]


CONTRASTIVE = Contrastive("contrastive", "SimCLR pre-training: two views per image, NT-Xent on a projection head; "
                          "test figure: kNN accuracy of the features", evaluable=False,
                          lacks="a contrastive pre-training run has no classifier")
