"""``prune``: a trained classifier cut to smaller hidden widths. ``sharpvision prune`` ranks the units of a run
(:mod:`sharpvision.commands.prune`) and asks this task for the cut model and the recipe of its run directory, whose
``model.widths`` rebuild the cut shapes (:func:`sharpvision.models.prune.shrink_to`), so ``eval``, ``analyze`` and
``finetune`` open a pruned run like any other. It trains further only as a fine-tune (:meth:`Prune.finetune_recipe`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision.config import Config
from sharpvision.models.prune import shrink
from sharpvision.models.recipe import DataShape
from sharpvision.tasks.task import CLASSIFY, Task


@dataclass(frozen=True)
class Prune(Task):
    def selects(self, cfg: Config) -> bool:
        return cfg.task == CLASSIFY.name and bool(cfg.model.widths)

    def cut(self, model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
        """A copy of ``model`` cut to the units ``keep`` lists for each width (sorted indices)."""
        return shrink(copy.deepcopy(model), keep)

    def recipe(self, cfg: Config, pruned: nn.Module, keep: dict[str, torch.Tensor], data: DataShape, amount: float,
               by: str, out: Path) -> Config:
        """The recipe of the run ``pruned`` (cut by ``keep``) written to ``out``: ``cfg`` with the cut widths. The
        recipe alone rebuilds the cut shapes (checked here: it is what eval, analyze and a fine-tune build)."""
        recipe = cfg.to_dict()
        recipe["model"]["widths"] = {n: len(idx) for n, idx in keep.items()}
        recipe["name"] = f"{cfg.name}-pruned{round(100 * amount)}-{by}"
        pruned_cfg = svconfig.from_dict(recipe)
        ckpt.fit(self.build_model(pruned_cfg, data), pruned.state_dict(), out, f"the pruned {cfg.model.name}")
        return pruned_cfg

    def finetune_recipe(self, pruned: Path, epochs: int) -> Config:
        """A short full fine-tune of the pruned run on its own data and recipe, keeping its classifier."""
        recipe = svconfig.load(pruned / "config.yaml").to_dict()
        recipe["name"] = f"{recipe['name']}-ft"
        recipe["finetune"] = {"source": str(pruned), "mode": "full", "head": "keep"}
        recipe["schedule"] = {**recipe["schedule"], "epochs": epochs,
                              "warmup_epochs": min(recipe["schedule"]["warmup_epochs"], epochs / 4)}
        return svconfig.from_dict(recipe)


PRUNE = Prune("prune", "a trained classifier cut to smaller hidden widths (model.widths) by sharpvision prune, "
              "trained further only by a fine-tune; test accuracy")
