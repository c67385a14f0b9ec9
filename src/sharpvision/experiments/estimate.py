"""What a suite will cost before it runs: a short timed pass of each distinct cell (seeds share one)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sharpvision import data as svdata
from sharpvision.experiments.suite import Cell, Suite
from sharpvision.train import train

TIMED_STEPS = 4


def training_seconds(suite: Suite, cells: list[Cell]) -> dict[str, float]:
    """cell key -> estimated training time in seconds (steps x batch / the images/s of a few timed steps).

    Evaluation and analysis are not included; the timing pass includes start-up, so short runs are overestimated.
    """
    speed: dict[tuple[str, ...], float] = {}
    sizes: dict[str, int] = {}  # training-set size by data config: seeds and settings share one read
    out = {}
    for cell in cells:
        cfg = suite.recipe_of(cell)
        group = tuple(o for o in cell.overrides if not o.startswith("seed="))
        if group not in speed:
            with tempfile.TemporaryDirectory() as tmp:
                short = suite.recipe_of(Cell(cell.labels, (*cell.overrides, "schedule.epochs=1",
                                                           "schedule.warmup_epochs=0",  # must fit in 1 epoch
                                                           f"train.max_steps_per_epoch={TIMED_STEPS}",
                                                           "train.lambda_max_every=null")))
                speed[group] = train(short, Path(tmp) / "run", progress=False)["images_per_s"]
        data_key = repr(cfg.data)
        if data_key not in sizes:
            sizes[data_key] = len(svdata.build_datasets(cfg.data).train)
        steps = sizes[data_key] // cfg.data.batch_size
        steps = min(steps, cfg.train.max_steps_per_epoch or steps)
        out[cell.key] = cfg.schedule.epochs * steps * cfg.data.batch_size / speed[group]
    return out
