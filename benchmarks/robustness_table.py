"""Robustness table: clean, mean corruption and PGD accuracy of a suite's finished cells, with and without
SAM, mean +- std over seeds, and the corruption claim (SAM's gain larger under corruption than clean).

It runs ``sharpvision eval --corruptions``, ``--mnist-c`` and ``--attack pgd`` (the library calls behind them) on
each finished cell that matches ``--only`` and has no evaluation at these settings yet, writing into the cell's
``run/eval/`` (so the suite's aggregate, claims and report read them), then writes
benchmarks/results/<name>.json. Resumable: run it again after more cells finish. The cells must still hold their
checkpoints (the suite directory they trained in).

    python benchmarks/robustness_table.py benchmarks/results/paper_cpu            # the Table 2 cells of paper-cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import provenance, write_result

from sharpvision import checkpoint as ckpt
from sharpvision.evaluate import run as evaluation
from sharpvision.experiments import claims, load_suite
from sharpvision.experiments.aggregate import aggregate

TABLE2 = ["setting=vanilla", "setting=sam", "data.fraction=0.04", "data.label_noise=0.0"]


def wanted(labels: dict[str, str], only: list[str]) -> bool:
    """Cells whose labels match: values of one axis are alternatives, axes must all match."""
    by_axis: dict[str, set[str]] = {}
    for item in only:
        axis, value = item.split("=", 1)
        by_axis.setdefault(axis, set()).add(value)
    return all(labels.get(axis) in values for axis, values in by_axis.items())


def current(path: Path, settings: dict[str, Any]) -> bool:
    """An evaluation already written with these settings (n, eps, steps, seed) is kept."""
    if not path.is_file():
        return False
    saved = json.loads(path.read_text())
    return all(saved.get(k) == v for k, v in settings.items())


def evaluate_cell(run_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Both evaluations of one cell, each skipped when already there; returns the seconds each took."""
    seconds: dict[str, float] = {}
    eval_dir, loaded = run_dir / "eval", None
    eps = [float(e) for e in args.eps.split(",")]
    if not current(eval_dir / "corruptions.json", {"n": args.corruption_subset, "seed": 0}):
        loaded = evaluation.load(run_dir)
        start = time.perf_counter()
        evaluation.corruption_run(loaded, "all", subset=args.corruption_subset, seed=0,
                                  command=f"sharpvision eval {run_dir} --corruptions --subset {args.corruption_subset}")
        seconds["corruptions_s"] = time.perf_counter() - start
    if args.mnist_c and not current(eval_dir / "mnist_c.json", {"n": args.corruption_subset, "seed": 0}):
        loaded = loaded or evaluation.load(run_dir)
        start = time.perf_counter()
        evaluation.mnist_c_run(loaded, "all", subset=args.corruption_subset, seed=0,
                               command=f"sharpvision eval {run_dir} --mnist-c --subset {args.corruption_subset}")
        seconds["mnist_c_s"] = time.perf_counter() - start
    if not current(eval_dir / "attack_pgd_linf.json", {"n": args.attack_subset, "steps": args.steps}):
        loaded = loaded or evaluation.load(run_dir)
        start = time.perf_counter()
        evaluation.attack_run(loaded, "pgd", eps, steps=args.steps, subset=args.attack_subset, seed=0,
                              command=f"sharpvision eval {run_dir} --attack pgd --eps {args.eps} --steps {args.steps} "
                                      f"--subset {args.attack_subset}")
        seconds["pgd_s"] = time.perf_counter() - start
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite_dir", type=Path, help="a suite directory (sharpvision reproduce --out) with checkpoints")
    p.add_argument("--only", action="append", help=f"AXIS=LABEL filters (default: {' '.join(TABLE2)})")
    p.add_argument("--corruption-subset", type=int, default=2000, help="test images for the 75 corruptions")
    p.add_argument("--attack-subset", type=int, default=1000, help="test images for PGD")
    p.add_argument("--eps", default="0.01,0.03", help="PGD L-inf radii in pixel units")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mnist-c", action=argparse.BooleanOptionalAction, default=True,
                   help="also MNIST-C's 15 corruptions (--no-mnist-c: only the -C table and PGD)")
    p.add_argument("--name", default="robustness_cpu")
    args = p.parse_args()
    only = args.only or TABLE2
    suite = load_suite(args.suite_dir / "suite.yaml")
    costs = {}
    for cell in suite.cells():
        run_dir = args.suite_dir / "cells" / cell.folder / "run"
        if not wanted(dict(cell.labels), only) or not (run_dir.parent / "result.json").is_file():
            continue
        if not ckpt.exists(run_dir / "checkpoints"):
            print(f"{cell.key}: no checkpoint left, skipped")
            continue
        costs[cell.key] = evaluate_cell(run_dir, args)
        print(f"{cell.key}: {costs[cell.key] or 'already evaluated'}", flush=True)
    results = aggregate(suite, args.suite_dir)
    metrics = ("corruption_clean_accuracy", "mean_corruption_accuracy", "mnist_c_mean_accuracy",
               *(f"pgd_linf_accuracy@{float(e):g}" for e in args.eps.split(",")), "test_accuracy")
    table = {key: {"labels": g["labels"], "n": g["n"], **{m: g["metrics"][m] for m in metrics if m in g["metrics"]}}
             for key, g in results["groups"].items() if wanted({**g["labels"], "seed": "0"}, only)}
    verdict = next(c for c in claims.evaluate(results)["claims"] if c["id"] == "corruption_gain")
    device = next((json.loads(p.read_text())["device"] for p in (args.suite_dir / "cells").glob("*/run/eval/*.json")),
                  "cpu")
    write_result({"benchmark": "robustness_table", **provenance("cpu"), "device": device, "suite": suite.name,
                  "settings": {"corruption_subset": args.corruption_subset, "attack_subset": args.attack_subset,
                               "eps": args.eps, "steps": args.steps, "alpha": "2.5*eps/steps", "table": "28px"},
                  "table": table, "corruption_gain": verdict, "seconds": costs}, args.name)


if __name__ == "__main__":
    main()
