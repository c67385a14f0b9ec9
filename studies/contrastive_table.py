"""Contrastive table (Chen et al. Sec. 4.5 at this machine's scale): does SAM help SimCLR
pre-training of a ViT? Micro ViT pre-trained contrastively (no labels) with AdamW or SAM on paper-cpu's pool (a
stratified 4% of Fashion-MNIST, 2,352 images), then a linear probe on the same images' labels.

Decided before the runs (nothing is tuned; no test figure chooses anything):
- pre-training: configs/micro.yaml with ``task=contrastive`` and the shipped SimCLR defaults (temperature 0.5,
  projection 64, crops of 20-100% of the area, jitter 0.4), 60 epochs, AdamW lr 2e-3, weight decay 0.05, batch 128
  (254 negatives per view), warm-up 3 epochs; SAM at rho 0.02, the ViT's rho of paper-cpu (chosen there on
  classification validation accuracy; not re-tuned for this task);
- the probe: the backbone frozen, a new linear head, AdamW lr 1e-2 without weight decay, 30 epochs, no SAM, the same
  labelled pool; test accuracy on all 10,000 test images. The kNN accuracy of the pre-trained backbone (k = 20,
  the training pool as the memory bank) is reported next to it;
- the statistic: SAM minus AdamW probe accuracy paired by seed, mean +- std, n = 3, two-sided paired t-test
  (scipy.stats.ttest_rel).

Resumable: finished runs (summary.json) are skipped, interrupted ones resume; their small files can be committed.

    python studies/contrastive_table.py                    # about 1.5 hours on 2 CPU cores
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import RESULTS, mean_std, paired, provenance, write_result

from sharpvision import config
from sharpvision.train import finetune_recipe, read_summary, train

SEEDS = (0, 1, 2)
SETTINGS = ("vanilla", "sam")
PRETRAIN = ["task=contrastive", "model.name=vit_micro", "data.fraction=0.04", "data.val_fraction=0.02",
            "schedule.epochs=60", "schedule.warmup_epochs=3", "train.eval_every=10", "train.log_every=100",
            "train.label_smoothing=0.0", "optim.rho=0.02"]
PROBE = ["data.fraction=0.04", "data.val_fraction=0.02", "schedule.epochs=30", "schedule.warmup_epochs=2",
         "train.eval_every=10", "train.log_every=100", "data.augment=none", "optim.sam=false", "optim.lr=1e-2",
         "optim.weight_decay=0.0"]


def pretrain(out: Path, setting: str, seed: int, extra: list[str]) -> Path:
    """One SimCLR pre-training run, trained when missing, resumed when interrupted."""
    run = out / "pretrain" / f"vit-{setting}-seed{seed}"
    if not (run / "summary.json").is_file():
        cfg = config.load("micro.yaml", [*PRETRAIN, *extra, f"seed={seed}", f"optim.sam={setting == 'sam'}",
                                         f"name=vit-simclr-{setting}-seed{seed}"])
        train(cfg, run, resume=run.exists(), progress=False)
    return run


def probe(source: Path, run: Path, seed: int, extra: list[str]) -> dict[str, Any]:
    """The linear probe of one pre-trained backbone, and the pre-training's own figures."""
    if not (run / "summary.json").is_file():
        cfg = finetune_recipe(source, "fashion_mnist", "linear", overrides=[*PROBE, *extra, f"seed={seed}"])
        train(cfg, run, resume=run.exists(), progress=False)
    summary, pre = read_summary(run), read_summary(source)
    return {"probe_test_accuracy": summary["test_accuracy"], "probe_train_accuracy": summary["train_accuracy"],
            "knn_test_accuracy": pre["test_knn_accuracy"], "pretrain_view_accuracy": pre["train_accuracy"],
            "pretrain_loss": pre["train_loss"], "pretrain_wall_time_s": pre["wall_time_s"],
            "probe_wall_time_s": summary["wall_time_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS / "contrastive_cpu", help="where the runs go")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--quick", action="store_true", help="2 epochs each, to check the script (writes *_quick.json)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = ["schedule.epochs=2", "schedule.warmup_epochs=0", "data.fraction=0.01"] if args.quick else []
    out = args.out.with_name(args.out.name + "_quick") if args.quick else args.out
    cells: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for setting in SETTINGS:
            source = pretrain(out, setting, seed, extra)
            key = f"{setting}/seed{seed}"
            cells[key] = probe(source, out / "probe" / f"vit-{setting}-seed{seed}", seed, extra)
            print(f"{key}: probe {cells[key]['probe_test_accuracy']:.4f} knn {cells[key]['knn_test_accuracy']:.4f}",
                  flush=True)
    table = {metric: paired(*([cells[f"{s}/seed{seed}"][metric] for seed in seeds] for s in SETTINGS))
             for metric in ("probe_test_accuracy", "knn_test_accuracy")}
    cost = {s: mean_std([cells[f"{s}/seed{seed}"]["pretrain_wall_time_s"] for seed in seeds]) for s in SETTINGS}
    write_result({"benchmark": "contrastive_table", **provenance("cpu"), "seeds": seeds,
                  "recipe": {"pretrain": PRETRAIN, "probe": PROBE, "extra": extra}, "table": table,
                  "pretrain_wall_time_s": cost, "cells": cells},
                 "contrastive_cpu_quick" if args.quick else "contrastive_cpu")


if __name__ == "__main__":
    main()
