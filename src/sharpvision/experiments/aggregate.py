"""Every finished cell's figures, and mean +- std (sample std, n - 1) over the seed axis with n stated."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path
from typing import Any

from sharpvision.experiments.suite import Suite

METRICS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "val_accuracy", "val_loss",
           "images_per_s", "wall_time_s")


def cell_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one cell: its summary's headline figures, its analysis, and its best validation accuracy.

    lambda_max is the analysis piece's when the cell has one, else the last one the training loop measured
    (``train.lambda_max_every``: a looser tolerance on the recipe's fixed sample).
    """
    summary = result["summary"]
    out = {k: float(summary[k]) for k in METRICS if isinstance(summary.get(k), (int, float))}
    out |= {k: float(v) for k, v in result.get("analysis", {}).items()}
    measured = [r["lambda_max"] for r in result.get("curve", []) if "lambda_max" in r]
    if measured:
        out.setdefault("lambda_max", float(measured[-1]))
    val = [r["val_accuracy"] for r in result.get("curve", []) if "val_accuracy" in r]
    if val:
        out["best_val_accuracy"] = max(val)
    return out


ATTACK_METRIC = re.compile(r"^(fgsm|pgd)_(linf|l2)_accuracy@(.+)$")  # pgd_linf_accuracy@0.05: one per attack/eps


def attack_metric(name: str) -> tuple[str, str, float] | None:
    """(attack, norm, eps) of a robust-accuracy metric name such as ``pgd_linf_accuracy@0.05``; None for others."""
    match = ATTACK_METRIC.match(name)
    return (match[1], match[2], float(match[3])) if match else None


def eval_metrics(run_dir: Path) -> dict[str, float]:
    """The robustness figures ``sharpvision eval`` wrote into a cell's run (``run/eval/``), when it has been run
    there: clean and mean corruption accuracy on the same images, the mean MNIST-C accuracy, and robust accuracy
    per attack and eps (``pgd_linf_accuracy@0.05``)."""
    out: dict[str, float] = {}
    corruptions = run_dir / "eval" / "corruptions.json"
    if corruptions.is_file():
        c = json.loads(corruptions.read_text())
        out |= {"corruption_clean_accuracy": float(c["clean_accuracy"]),
                "mean_corruption_accuracy": float(c["mean_corruption_accuracy"])}
    mnist_c = run_dir / "eval" / "mnist_c.json"
    if mnist_c.is_file():
        out["mnist_c_mean_accuracy"] = float(json.loads(mnist_c.read_text())["mean_corruption_accuracy"])
    for path in sorted((run_dir / "eval").glob("attack_*.json")):
        a = json.loads(path.read_text())
        out |= {f"{a['attack']}_{a['norm']}_accuracy@{float(e):g}": float(acc)
                for e, acc in a["accuracy"].items() if float(e) > 0 and a["attack"] in ("fgsm", "pgd")}
    return out


def aggregate(suite: Suite, out: Path, loaded: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``cells``: key -> labels and metrics; ``groups``: the cells that differ only in seed, mean +- std, n.

    ``loaded``: the finished cells' result.json by cell key, when the caller has read them already.
    """
    cells = {}
    for cell in suite.cells():
        path = out / "cells" / cell.folder / "result.json"
        result = loaded.get(cell.key) if loaded is not None else \
            json.loads(path.read_text()) if path.exists() else None
        if result is not None:
            metrics = cell_metrics(result) | eval_metrics(out / "cells" / cell.folder / "run")
            cells[cell.key] = {"labels": dict(cell.labels), "metrics": metrics}
    groups: dict[str, dict[str, Any]] = {}
    for cell in cells.values():
        labels = {a: v for a, v in cell["labels"].items() if a != "seed"}
        group = groups.setdefault(",".join(f"{a}={v}" for a, v in labels.items()), {"labels": labels, "runs": []})
        group["runs"].append(cell["metrics"])
    for group in groups.values():
        runs = group.pop("runs")
        names = sorted({m for r in runs for m in r})
        group["n"] = len(runs)
        group["metrics"] = {m: _mean_std([r[m] for r in runs if m in r]) for m in names}
    return {"suite": suite.name, "axes": {a: list(v) for a, v in suite.axes.items()},
            "cells_total": len(suite.cells()), "cells_done": len(cells), "cells": cells, "groups": groups}


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """``out/results.json``, replaced in one step: shards and reports rewrite it while others may be reading it."""
    tmp = out / f".results.json.{os.getpid()}"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    return out / "results.json"


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample std; the std is nan when a value is not finite (kappa = inf for a singular NTK), where the
    standard library's stdev raises instead."""
    std = 0.0 if len(values) < 2 else statistics.stdev(values) if all(map(math.isfinite, values)) else math.nan
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}
