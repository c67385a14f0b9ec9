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


def _seeds_with(cells: Cells, group: tuple, settings: tuple[str, ...]) -> list[str]:
    """The seeds on which ``group`` has a cell of every one of ``settings``: what a comparison by seed pairs."""
    first, *rest = settings
    return sorted(s for (g, st, s) in cells if g == group and st == first and all((g, o, s) in cells for o in rest))


def _points(cells: Cells, group: tuple, settings: set[str] | tuple[str, ...], seeds: list[str],
            metric: str) -> dict[str, list[float]]:
    """Setting -> ``metric`` in points on ``seeds``, in seed order (so two settings' lists pair by seed)."""
    return {st: [100 * cells[(group, st, s)][metric] for s in seeds] for st in settings}


def _minus(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


@table("label_noise", "per group of cells (model, data fraction, label noise): test accuracy on the clean test set and "
                      "train accuracy on the noisy labels with AdamW and SAM, and SAM's test-accuracy gain paired by "
                      "seed, in points, over the seeds that have both")
def label_noise(results: dict[str, Any]) -> dict[str, Any]:
    cells = by_setting(results)
    rows = []
    for group in dict.fromkeys(g for g, _, _ in cells):
        seeds = _seeds_with(cells, group, ("vanilla", "sam"))
        have = all("test_accuracy" in cells[(group, st, s)] and "train_accuracy" in cells[(group, st, s)]
                   for st in ("vanilla", "sam") for s in seeds)
        if not seeds or not have:
            continue
        test = _points(cells, group, ("vanilla", "sam"), seeds, "test_accuracy")
        train = _points(cells, group, ("vanilla", "sam"), seeds, "train_accuracy")
        gain = _minus(test["sam"], test["vanilla"])
        rows.append({"labels": dict(group), "seeds": seeds, "test_vanilla": stats.mean_std(test["vanilla"]),
                     "test_sam": stats.mean_std(test["sam"]),
                     "gain": stats.mean_std(gain) | stats.paired(test["sam"], test["vanilla"]),
                     "sam_better_seeds": sum(g > 0 for g in gain), "train_vanilla": stats.mean_std(train["vanilla"]),
                     "train_sam": stats.mean_std(train["sam"])})
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
            seeds = _seeds_with(cells, group, (setting, "vanilla", "sam"))
            row: dict[str, Any] = {"labels": dict(group), "setting": setting, "seeds": seeds}
            if seeds:
                acc = _points(cells, group, {"vanilla", "sam", setting}, seeds, "test_accuracy")
                gain = _minus(acc[setting], acc["vanilla"])
                sam_gain = stats.mean_std(_minus(acc["sam"], acc["vanilla"]))["mean"]
                row |= {"test": stats.mean_std(acc[setting]),
                        "gain": None if setting == "vanilla" else stats.mean_std(gain),
                        "share_of_sam_gain": None if setting in ("vanilla", "sam") or sam_gain is None
                        or sam_gain <= 0 else stats.mean_std(gain)["mean"] / sam_gain}
            rows.append(row)
    return {"unit": "points", "rows": rows}
