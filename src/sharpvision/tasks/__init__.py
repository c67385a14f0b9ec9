"""Tasks: what a run is, one object each, asked by everything that builds, trains, scores or opens a run.

=============  ===============================================================================================
classify       a classifier trained from scratch on class labels; test accuracy; evaluable
contrastive    SimCLR pre-training (two views, NT-Xent); kNN accuracy of its features; no classifier to evaluate
finetune       a classifier started from a source's weights, fully or as a linear probe; test accuracy; evaluable
prune          a trained classifier cut to smaller widths (``sharpvision prune``); test accuracy; evaluable
=============  ===============================================================================================

Each :class:`Task` says how it builds its data and model, how a fresh run starts (a source's weights, a frozen
backbone), its targets and label smoothing, what its summary records and whether it can be evaluated. The session,
the loop and :func:`sharpvision.runs.open_run` ask ``task_of(cfg)``; nothing outside this package and the recipe's
validation (``config.py``) compares ``cfg.task``. Adversarial training (``adv``) is an option of any classifier's
run, not a task: its attack replaces the batch inside the step.
"""

from __future__ import annotations

from sharpvision.config import Config
from sharpvision.tasks.contrastive import CONTRASTIVE
from sharpvision.tasks.finetune import FINETUNE, finetune_recipe, start_from_source
from sharpvision.tasks.prune import PRUNE
from sharpvision.tasks.task import CLASSIFY, Task

# most specific first: task_of takes the first that selects a recipe; classify takes the rest of cfg.task: classify
TASKS: dict[str, Task] = {t.name: t for t in (CONTRASTIVE, FINETUNE, PRUNE, CLASSIFY)}


def task_of(cfg: Config) -> Task:
    """The task ``cfg`` trains."""
    return next(t for t in TASKS.values() if t.selects(cfg))


__all__ = ["CLASSIFY", "CONTRASTIVE", "FINETUNE", "PRUNE", "TASKS", "Task", "finetune_recipe", "start_from_source",
           "task_of"]
