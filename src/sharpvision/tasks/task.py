"""What a task declares, and the plainest one: ``classify``, a classifier trained from scratch on class labels.

Every other task changes only what differs from it (:mod:`sharpvision.tasks.contrastive`, ``finetune``,
``prune``); the session, the loop and :func:`sharpvision.runs.open_run` ask these methods instead of comparing
``cfg.task``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sharpvision import data as svdata
from sharpvision import models
from sharpvision.config import Config
from sharpvision.models.recipe import DataShape


@dataclass(frozen=True)
class Task:
    """One kind of run: how it builds its data and model, what it trains against, what it measures and records,
    and whether it can be evaluated. This base is ``classify``."""

    name: str
    about: str  # one line: what a run of it trains, and its test figure
    evaluable: bool = True  # it ends in a classifier: test accuracy while training; eval, analyze, prune and attacks
    # score it. Without one its test figure is the kNN accuracy of its features, and those commands refuse it:
    lacks: str = ""  # what it lacks, for their one-line refusal ("a ... run has no classifier")

    def selects(self, cfg: Config) -> bool:
        """Whether ``cfg`` is a run of this task (:func:`sharpvision.tasks.task_of` asks the most specific first)."""
        return cfg.task == self.name

    def build_data(self, cfg: Config) -> svdata.DataBundle:
        """The recipe's data as training reads it (label smoothing goes into Mixup's soft targets)."""
        return svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing)

    def build_model(self, cfg: Config, data: DataShape) -> nn.Module:
        """The freshly initialised model, sized by the data; what a checkpoint of this task loads into."""
        return models.from_config(cfg, data)

    def start(self, cfg: Config, model: nn.Module, fresh: bool) -> dict[str, Any] | None:
        """Ready the built model for training (``fresh``: no checkpoint of its own to resume); returns what the
        manifest records of weights it started from, None when it starts from its own initialisation."""
        return None

    def targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the loss compares the model's output with, for the batch ``x`` with labels ``y``."""
        return y

    def label_smoothing(self, cfg: Config, mixup: bool) -> float:
        """The loss's label smoothing; soft (Mixup) targets carry their own."""
        return 0.0 if mixup else cfg.train.label_smoothing

    def notes(self, cfg: Config) -> list[str]:
        """One line each for settings of the recipe the task leaves out, said once when the run starts."""
        return []

    def record(self, cfg: Config, model: nn.Module, source: dict[str, Any] | None) -> dict[str, Any]:
        """What the run's summary adds about this task."""
        return {}


CLASSIFY = Task("classify", "a classifier trained from scratch on class labels (cross-entropy); test accuracy")
