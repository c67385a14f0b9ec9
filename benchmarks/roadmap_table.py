"""The ConvNeXt roadmap grid's table: per step, clean test accuracy with AdamW and with SAM, SAM's gain,
what the step changes against the step it modifies, lambda_max and, with ``--robustness``, mean corruption and PGD
accuracy; and the tests fixed before the grid ran (docs/models.md, "The training grid").

With ``--robustness`` it first runs ``sharpvision eval --corruptions`` and ``--attack pgd`` (the library calls
behind them, through robustness_table.py) on each finished cell not yet evaluated at these settings, writing into
the cell's ``run/eval/``. Resumable: run it again as more cells finish.

    python benchmarks/roadmap_table.py benchmarks/results/roadmap_cpu                # the table from finished cells
    python benchmarks/roadmap_table.py benchmarks/results/roadmap_cpu --robustness   # + robustness of each cell
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import mean_std, paired, provenance, write_result
from robustness_table import evaluate_cell
from scipy import stats

from sharpvision import checkpoint as ckpt
from sharpvision.experiments import load_suite
from sharpvision.experiments.aggregate import aggregate
from sharpvision.models.roadmap import STEPS


def step_index(label: str) -> int:
    """The roadmap step of a model label of the suite (``11_gelu`` -> 11)."""
    return int(label.split("_", 1)[0])


def by_step(results: dict[str, Any]) -> dict[int, dict[str, dict[str, dict[str, float]]]]:
    """Finished cells as step -> setting -> seed -> metrics."""
    out: dict[int, dict[str, dict[str, dict[str, float]]]] = {}
    for cell in results["cells"].values():
        lab = cell["labels"]
        out.setdefault(step_index(lab["model"]), {}).setdefault(lab["setting"], {})[lab["seed"]] = cell["metrics"]
    return out


def step_row(cells: dict[str, dict[str, dict[str, float]]], base: dict[str, dict[str, dict[str, float]]] | None,
             metrics: tuple[str, ...]) -> dict[str, Any]:
    """One step: test accuracy paired by seed (AdamW, SAM, SAM's gain), the change against its base step per
    setting (paired by seed: the same seed gives the same data), and the other metrics per setting."""
    van, sam = cells.get("vanilla", {}), cells.get("sam", {})
    seeds = sorted(set(van) & set(sam))
    row: dict[str, Any] = {"seeds": seeds}
    for m in ("test_accuracy", *metrics) if seeds else ():
        if all(m in van[s] and m in sam[s] for s in seeds):
            row[m] = paired([van[s][m] for s in seeds], [sam[s][m] for s in seeds])
    if base is not None:
        for setting, own in (("vanilla", van), ("sam", sam)):
            common = sorted(set(own) & set(base.get(setting, {})))
            if common:
                row[f"change_{setting}"] = mean_std([own[s]["test_accuracy"] - base[setting][s]["test_accuracy"]
                                                     for s in common]) | {"n": len(common)}
    return row


def tests(rows: dict[int, dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    """The pre-registered tests over steps (each step's seed mean is one observation; two-sided, alpha 0.05):
    SAM's gain across the roadmap (one-sample t), its trend along the roadmap (Spearman with the step index),
    whether the same steps help with and without SAM (Spearman of the per-step changes, and the steps whose change
    flips sign), SAM's gain in each robustness metric, and whether clean accuracy ranks the steps' robustness."""
    done = {i: r for i, r in rows.items() if "test_accuracy" in r}
    out: dict[str, Any] = {"steps": len(done)}
    if len(done) < 3:
        return out
    idx = sorted(done)
    gains = [done[i]["test_accuracy"]["sam_minus_vanilla"]["mean"] for i in idx]
    t = stats.ttest_1samp(gains, 0.0)
    out["sam_gain"] = {**mean_std(gains), "n": len(gains), "t_p": float(t.pvalue)}
    rho = stats.spearmanr(idx, gains)
    out["gain_trend"] = {"spearman": float(rho.statistic), "p": float(rho.pvalue), "n": len(idx)}
    both = [i for i in idx if "change_vanilla" in done[i] and "change_sam" in done[i]]
    if len(both) >= 3:
        a = [done[i]["change_vanilla"]["mean"] for i in both]
        b = [done[i]["change_sam"]["mean"] for i in both]
        rho = stats.spearmanr(a, b)
        out["same_steps_help"] = {"spearman": float(rho.statistic), "p": float(rho.pvalue), "n": len(both),
                                  "sign_flips": [i for i, x, y in zip(both, a, b) if (x > 0) != (y > 0)]}
    for m in metrics:
        have = [i for i in idx if m in done[i]]
        if len(have) >= 3:
            g = [done[i][m]["sam_minus_vanilla"]["mean"] for i in have]
            clean = [done[i]["test_accuracy"]["vanilla"]["mean"] for i in have]
            robust = [done[i][m]["vanilla"]["mean"] for i in have]
            rho = stats.spearmanr(clean, robust)
            out[m] = {"sam_gain": {**mean_std(g), "n": len(g), "t_p": float(stats.ttest_1samp(g, 0.0).pvalue)},
                      "clean_ranks_it": {"spearman": float(rho.statistic), "p": float(rho.pvalue), "n": len(have)}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite_dir", type=Path, help="the roadmap suite's directory (sharpvision reproduce --out)")
    p.add_argument("--robustness", action="store_true", help="evaluate each finished cell first (needs checkpoints)")
    p.add_argument("--corruption-subset", type=int, default=500, help="test images for the 75 corruptions")
    p.add_argument("--attack-subset", type=int, default=500, help="test images for PGD")
    p.add_argument("--eps", default="0.01,0.03", help="PGD L-inf radii in pixel units")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--name", default="roadmap_table_cpu")
    args = p.parse_args()
    args.mnist_c = False
    suite = load_suite(args.suite_dir / "suite.yaml")
    costs = {}
    for cell in suite.cells() if args.robustness else ():
        run_dir = args.suite_dir / "cells" / cell.folder / "run"
        if (run_dir.parent / "result.json").is_file() and ckpt.exists(run_dir / "checkpoints"):
            costs[cell.key] = evaluate_cell(run_dir, args)
            print(f"{cell.key}: {costs[cell.key] or 'already evaluated'}", flush=True)
    results = aggregate(suite, args.suite_dir)
    # tested over the steps: sharpness, and the robustness figures (the clean accuracy on the corruption images
    # is only their reference)
    pgd = tuple(f"pgd_linf_accuracy@{float(e):g}" for e in args.eps.split(","))
    tested = ("lambda_max", "mean_corruption_accuracy", *pgd)
    cells = by_step(results)
    rows = {s.index: step_row(cells[s.index], cells.get(s.base) if s.index else None,
                              ("train_accuracy", "corruption_clean_accuracy", *tested))
            for s in STEPS if s.index in cells}
    summaries = [json.loads(f.read_text()) for f in sorted((args.suite_dir / "cells").glob("*/result.json"))]
    params = {step_index(r["labels"]["model"]): r["summary"]["params"] for r in summaries}
    table = {f"{s.index:02d}": {"step": s.name + "_micro", "change": s.change, "base": f"{s.base:02d}",
                                "params": params.get(s.index), **rows[s.index]} for s in STEPS if s.index in rows}
    device = summaries[0]["summary"]["device"] if summaries else "cpu"
    write_result({"benchmark": "roadmap_table", **provenance("cpu"), "device": device, "suite": suite.name,
                  "cells_done": results["cells_done"], "cells_total": results["cells_total"],
                  "settings": {"corruption_subset": args.corruption_subset, "attack_subset": args.attack_subset,
                               "eps": args.eps, "steps": args.steps, "alpha": "2.5*eps/steps", "table": "28px"},
                  "table": table, "tests": tests(rows, tested), "seconds": costs}, args.name)


if __name__ == "__main__":
    main()
