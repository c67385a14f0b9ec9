"""Every finished cell's figures, and mean +- std (sample std, n - 1) over the seed axis with n stated."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from sharpvision import stats
from sharpvision.experiments.suite import Suite

METRICS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "val_accuracy", "val_loss",
           "images_per_s", "wall_time_s")


def cell_metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one cell: its summary's headline figures and parameter count, its analysis, and its best
    validation accuracy.

    ``lambda_max`` is always the training loop's estimate at the last epoch (``train.lambda_max_every``, on a fixed
    training sample per seed), so every cell of a suite is measured by one instrument; the analysis piece's
    (tighter tolerance, larger sample) is ``hessian_lambda_max``. ``lambda_max_matched`` is the loop's estimate at
    the first epoch whose training loss fell below ``train.matched_loss`` (``matched_epoch``). A value that is not
    finite (kappa of a singular NTK) is None: results files are strict JSON.
    """
    summary = result["summary"]
    out: dict[str, float | None] = {k: float(summary[k]) for k in (*METRICS, "num_classes", "params")
                                    if isinstance(summary.get(k), (int, float))}
    out |= {("hessian_lambda_max" if k == "lambda_max" else k): float(v)
            for k, v in result.get("analysis", {}).items()}
    curve = result.get("curve", [])
    for name in ("lambda_max", "lambda_max_matched", "matched_epoch"):
        measured = [r[name] for r in curve if name in r]
        if measured:
            out[name] = float(measured[-1])
    val = [r["val_accuracy"] for r in curve if "val_accuracy" in r]
    if val:
        out["best_val_accuracy"] = max(val)
        best = max(range(len(curve)), key=lambda i: curve[i].get("val_accuracy", -1.0))
        if "test_accuracy" in curve[best]:
            out["test_accuracy_at_best_val"] = float(curve[best]["test_accuracy"])
    return {k: stats.finite(v) for k, v in out.items()}


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
        group["metrics"] = {m: stats.mean_std([math.inf if r[m] is None else r[m] for r in runs if m in r])
                            for m in names}
    return {"suite": suite.name, "claims": suite.claims, "smoke": suite.smoke,
            "axes": {a: list(v) for a, v in suite.axes.items()}, "cells_total": len(suite.cells()),
            "cells_done": len(cells), "cells": cells, "groups": groups}


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """``out/results.json``, replaced in one step: shards and reports rewrite it while others may be reading it."""
    tmp = out / f".results.json.{os.getpid()}"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    return out / "results.json"
