"""SAM's gain over AdamW paired by seed, per group of cells: by label-noise level (Foret et al.'s table) and for
SAM's efficient variants (the share of SAM's gain each keeps). Accuracies in points."""

from __future__ import annotations

from typing import Any

from sharpvision import stats
from sharpvision.experiments.tables import table

Cells = dict[tuple[tuple[tuple[str, str], ...], str, str], dict[str, float]]  # (other labels, setting, seed) -> metrics


def by_setting(results: dict[str, Any]) -> Cells:
    """The finished cells keyed by their labels but setting and seed, their setting and their seed."""
    out: Cells = {}
    for cell in results["cells"].values():
        labels = dict(cell["labels"])
        setting, seed = labels.pop("setting", ""), labels.pop("seed", "0")
        out[(tuple(labels.items()), setting, seed)] = cell["metrics"]
    return out


def _points(cells: Cells, group: tuple, setting: str, seeds: list[str], metric: str) -> list[float]:
    return [100 * cells[(group, setting, s)][metric] for s in seeds]


def _ms(values: list[float]) -> dict[str, Any]:
    return stats.mean_std(values)


@table("label_noise", "per group of cells (model, data fraction, label noise): test accuracy on the clean test set and "
                      "train accuracy on the noisy labels with AdamW and SAM, and SAM's test-accuracy gain paired by "
                      "seed, in points, over the seeds that have both")
def label_noise(results: dict[str, Any]) -> dict[str, Any]:
    cells = by_setting(results)
    rows = []
    for group in dict.fromkeys(g for g, _, _ in cells):
        seeds = sorted(s for (g, st, s) in cells if g == group and st == "vanilla" and (g, "sam", s) in cells)
        have = all("test_accuracy" in cells[(group, st, s)] and "train_accuracy" in cells[(group, st, s)]
                   for st in ("vanilla", "sam") for s in seeds)
        if not seeds or not have:
            continue
        test = {st: _points(cells, group, st, seeds, "test_accuracy") for st in ("vanilla", "sam")}
        gain = [a - b for a, b in zip(test["sam"], test["vanilla"])]
        rows.append({"labels": dict(group), "seeds": seeds, "test_vanilla": _ms(test["vanilla"]),
                     "test_sam": _ms(test["sam"]), "gain": _ms(gain) | stats.paired(test["sam"], test["vanilla"]),
                     "sam_better_seeds": sum(g > 0 for g in gain),
                     "train_vanilla": _ms(_points(cells, group, "vanilla", seeds, "train_accuracy")),
                     "train_sam": _ms(_points(cells, group, "sam", seeds, "train_accuracy"))})
    return {"unit": "points", "rows": rows}


@table("variants", "per group of cells and setting: test accuracy, the gain over AdamW paired by seed, and the share "
                   "of SAM's gain kept (the setting's mean gain over SAM's, on the seeds that have AdamW, SAM and the "
                   "setting), in points")
def variants(results: dict[str, Any]) -> dict[str, Any]:
    cells = by_setting(results)
    rows = []
    for group in dict.fromkeys(g for g, _, _ in cells):
        settings = list(dict.fromkeys(st for g, st, _ in cells if g == group))
        if "vanilla" not in settings or "sam" not in settings:
            continue
        for setting in settings:
            seeds = sorted(s for (g, st, s) in cells if g == group and st == setting
                           and (g, "vanilla", s) in cells and (g, "sam", s) in cells)
            row: dict[str, Any] = {"labels": dict(group), "setting": setting, "seeds": seeds}
            if seeds:
                acc = {st: _points(cells, group, st, seeds, "test_accuracy") for st in {"vanilla", "sam", setting}}
                gain = [a - b for a, b in zip(acc[setting], acc["vanilla"])]
                sam_gain = stats.mean_std([a - b for a, b in zip(acc["sam"], acc["vanilla"])])["mean"]
                row |= {"test": _ms(acc[setting]), "gain": None if setting == "vanilla" else _ms(gain),
                        "share_of_sam_gain": None if setting in ("vanilla", "sam") or sam_gain is None
                        or sam_gain <= 0 else stats.mean_std(gain)["mean"] / sam_gain}
            rows.append(row)
    return {"unit": "points", "rows": rows}
