"""ConvNeXt against ResNet under attack at equal clean accuracy (the question the ConvNeXt paper's
reviewers asked). In paper-cpu's Table 2 the micro ResNet ends a few points more accurate than the micro ConvNeXt,
so comparing their final robust accuracy would mix robustness with accuracy.

Decided before the runs: for each seed, the ResNet cell's recipe (AdamW, no SAM; the same data, seed and
schedule) is re-trained epoch by epoch (exact resume between epochs) with validation every epoch, and stopped at
the first epoch whose validation accuracy reaches the ConvNeXt cell's final validation accuracy (the test set
chooses nothing). The re-run is the recipe's run, not the cell's weights: on another thread count its float sums
differ, and its trajectory drifts from the cell's by a point or two mid-training. That snapshot and the ConvNeXt
cell are attacked alike: PGD-10 L-inf at the eps of the robustness table, on the same first test images. The
statistic: ConvNeXt minus ResNet robust accuracy paired by seed, mean +- std, n, two-sided paired t-test
(scipy.stats.ttest_rel).

    python studies/convnext_vs_resnet_attack.py           # after paper-cpu's Table 2 cells; minutes per seed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import RESULTS, mean_std, paired_t_p, provenance, write_result

from sharpvision import config
from sharpvision.evaluate import run as evaluation
from sharpvision.experiments import load_suite
from sharpvision.train import train

CELL = "seed={seed},model={model},setting=vanilla,data.fraction=0.04,data.label_noise=0.0"


def last_val(run: Path) -> float:
    """The validation accuracy of the last finished epoch in ``run``'s metrics."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return next(r["val_accuracy"] for r in reversed(rows) if "val_accuracy" in r and "epoch" in r)


def matched_resnet(suite_dir: Path, out: Path, seed: int, target: float) -> tuple[Path, int, float]:
    """The ResNet cell's recipe re-trained until its validation accuracy first reaches ``target``."""
    suite = load_suite(suite_dir / "suite.yaml")
    cell = next(c for c in suite.cells() if c.folder == CELL.format(seed=seed, model="resnet"))
    cfg = config.load(suite.recipe, [*cell.overrides, f"name={suite.name}", "train.eval_every=1"])
    run = out / f"resnet-seed{seed}"
    epoch = (run / "metrics.jsonl").read_text().count('"train_loss"') if (run / "metrics.jsonl").is_file() else 0
    while epoch == 0 or last_val(run) < target:
        if epoch == cfg.schedule.epochs:
            raise SystemExit(f"seed {seed}: the ResNet never reaches validation accuracy {target:.4f}")
        epoch += 1
        train(cfg, run, resume=run.exists(), stop_after_epoch=epoch, progress=False)
    return run, epoch, last_val(run)


def attacked(run: Path, eps: list[float], subset: int, steps: int) -> dict[str, float]:
    """Clean and PGD accuracy of ``run``'s latest checkpoint, written into its eval_matched/ folder (kept: an
    evaluation already there at these settings is read, not redone)."""
    path = run / "eval_matched" / "attack_pgd_linf.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("n") == subset and saved.get("steps") == steps and set(saved["accuracy"]) >= {str(e) for e in eps}:
        result = saved
    else:
        result = evaluation.attack_run(evaluation.load(run), "pgd", eps, steps=steps, subset=subset, seed=0,
                                       out=path.parent)
    return {f"{float(e):g}": a for e, a in result["accuracy"].items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite-dir", type=Path, default=RESULTS / "paper_cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "convnext_vs_resnet_cpu")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--eps", default="0.01,0.03")
    p.add_argument("--images", "--subset", dest="subset", type=int, default=1000, help="test images attacked")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    eps = [float(e) for e in args.eps.split(",")]
    rows: dict[str, dict[str, Any]] = {}
    for seed in map(int, args.seeds.split(",")):
        convnext = args.suite_dir / "cells" / CELL.format(seed=seed, model="convnext") / "run"
        target = last_val(convnext)
        resnet, epoch, val = matched_resnet(args.suite_dir, args.out, seed, target)
        rows[f"seed{seed}"] = {"convnext_val_accuracy": target, "resnet_epoch": epoch, "resnet_val_accuracy": val,
                               "convnext": attacked(convnext, eps, args.subset, args.steps),
                               "resnet": attacked(resnet, eps, args.subset, args.steps)}
        print(seed, rows[f"seed{seed}"], flush=True)
    table = {}
    for e in ["0", *(f"{x:g}" for x in eps)]:
        c = [r["convnext"][e] for r in rows.values()]
        r_ = [r["resnet"][e] for r in rows.values()]
        diffs = [a - b for a, b in zip(c, r_)]
        table[e] = {"convnext": mean_std(c), "resnet": mean_std(r_), "convnext_minus_resnet": mean_std(diffs),
                    "n": len(diffs), "paired_t_p": paired_t_p(c, r_)}
    write_result({"benchmark": "convnext_vs_resnet_attack", **provenance("cpu"), "eps": eps, "subset": args.subset,
                  "steps": args.steps, "table": table, "seeds": rows}, "convnext_vs_resnet_cpu")




if __name__ == "__main__":
    main()
