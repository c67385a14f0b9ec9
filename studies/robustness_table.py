"""Robustness of a suite's cells: runs ``sharpvision eval --corruptions``, ``--mnist-c`` and ``--attack pgd`` (the
library calls behind them) on each finished cell that matches ``--only`` and has no evaluation at these settings
yet, writing into the cell's ``run/eval/`` (where the suite's aggregate, claims, report and tables read them), then
writes the tables the suite names (``DIR/tables/``: paper-cpu's ``robustness``, roadmap-cpu's ``roadmap``; tables
are computed in sharpvision.experiments.tables). Resumable: run it again after more cells finish. The cells must
still hold their checkpoints (the suite directory they trained in).

    python studies/robustness_table.py benchmarks/results/paper_cpu               # the Table 2 cells of paper-cpu
    python studies/robustness_table.py benchmarks/results/roadmap_cpu --only setting=vanilla --only setting=sam \
        --corruption-subset 500 --attack-subset 500 --no-mnist-c                   # every cell of the roadmap grid
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sharpvision import checkpoint as ckpt
from sharpvision.evaluate import run as evaluation
from sharpvision.experiments import load_suite, tables
from sharpvision.experiments.suite import SuiteError, select

TABLE2 = ["setting=vanilla", "setting=sam", "data.fraction=0.04", "data.label_noise=0.0"]


def filters(only: list[str]) -> list[str]:
    """``--only`` as ``sharpvision reproduce --only`` reads it, with repeated filters on one axis merged into one
    (``--only setting=vanilla --only setting=sam`` is ``--only setting=vanilla,sam``): labels of one axis are
    alternatives, axes must all match."""
    by_axis: dict[str, list[str]] = {}
    for item in only:
        axis, sep, labels = item.partition("=")
        by_axis.setdefault(axis, []).extend(labels.split(",") if sep else [])
    return [f"{axis}={','.join(labels)}" if labels else axis for axis, labels in by_axis.items()]


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
    p.add_argument("--only", action="append",
                   help=f"AXIS=LABEL[,LABEL...] filters, as reproduce reads them; repeated on one axis, alternatives "
                        f"(default, paper-cpu's Table 2 cells: {' '.join(TABLE2)})")
    p.add_argument("--corruption-subset", type=int, default=2000, help="test images for the 75 corruptions")
    p.add_argument("--attack-subset", type=int, default=1000, help="test images for PGD")
    p.add_argument("--eps", default="0.01,0.03", help="PGD L-inf radii in pixel units")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mnist-c", action=argparse.BooleanOptionalAction, default=True,
                   help="also MNIST-C's 15 corruptions (--no-mnist-c: only the -C table and PGD)")
    args = p.parse_args()
    only = args.only or TABLE2
    suite = load_suite(args.suite_dir / "suite.yaml")
    try:
        cells = select(suite.cells(), filters(only), None)
    except SuiteError as e:
        p.exit(2, f"robustness_table: {e}\n")
    for cell in cells:
        run_dir = args.suite_dir / "cells" / cell.folder / "run"
        if not (run_dir.parent / "result.json").is_file():
            continue
        if not ckpt.exists(run_dir / "checkpoints"):
            print(f"{cell.key}: no checkpoint left, skipped")
            continue
        print(f"{cell.key}: {evaluate_cell(run_dir, args) or 'already evaluated'}", flush=True)
    for path in tables.write(args.suite_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
