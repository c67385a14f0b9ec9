"""What a suite will cost before it runs: a short timed pass of each distinct cell (seeds share one).

Opt-in (``sharpvision reproduce SUITE --dry-run --estimate``): the passes build each setup's data and model and
train a few steps, seconds each, which on a small suite is about what the suite itself costs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sharpvision import data as svdata
from sharpvision.experiments.suite import Cell, Suite
from sharpvision.train import train

TIMED_STEPS = 4


def setup_of(cell: Cell) -> tuple[str, ...]:
    """What a timed pass stands for: the cell's overrides but its seed (seeds train at the same speed)."""
    return tuple(o for o in cell.overrides if not o.startswith("seed="))


def method(cells: list[Cell]) -> str:
    """How ``training_seconds`` made its estimate for ``cells``, in words, for the line that quotes it."""
    return (f"estimated from {TIMED_STEPS} timed training steps of each of {len({setup_of(c) for c in cells})} "
            "setups (seeds share one) on this machine, start-up included (short runs read long); evaluation and "
            "analysis not included")


def training_seconds(suite: Suite, cells: list[Cell]) -> dict[str, float]:
    """cell key -> estimated training time in seconds (steps x batch / the images/s of a few timed steps).

    Evaluation and analysis are not included; the timing pass includes start-up, so short runs are overestimated.
    """
    speed: dict[tuple[str, ...], float] = {}
    sizes: dict[str, int] = {}  # training-set size by data config: seeds and settings share one read
    out = {}
    for cell in cells:
        cfg = suite.recipe_of(cell)
        group = setup_of(cell)
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
