"""Pruning table: do SAM models prune further at equal accuracy loss? Test accuracy of the
paper-cpu Table 2 models (micro ViT, Mixer, ResNet, ConvNeXt; AdamW vs SAM; 3 seeds) after removing 25/50/75/90%
of every hidden width, ranked by activity (how often a unit fires on 1,024 training images) or by weight magnitude,
without fine-tuning; parameters and forward FLOPs before and after.

Decided before the runs: the primary figure is the accuracy drop (before minus after, points) at 50% by activity,
SAM minus AdamW paired by seed, per family, with a two-sided paired t-test (scipy.stats.ttest_rel; n = 3). The
secondary: the largest amount of the grid whose drop stays within 1 point, per model.

It prunes in memory (``sharpvision prune`` writes the same cuts to run directories); resumable per source.

    python studies/prune_table.py                       # after `sharpvision reproduce paper-cpu`
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, mean_std, paired_t_p, provenance, write_result

from sharpvision import data as svdata
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.sparsity import unit_activity
from sharpvision.evaluate import evaluate
from sharpvision.evaluate import run as evaluation
from sharpvision.flops import forward_flops
from sharpvision.models.prune import keep_top, magnitude_scores, prunable, shrink

FAMILIES = ("vit", "mixer", "resnet", "convnext")
SETTINGS = ("vanilla", "sam")
AMOUNTS = (0.25, 0.5, 0.75, 0.9)
CRITERIA = ("activity", "magnitude")
CELL = "seed={seed},model={model},setting={setting},data.fraction=0.04,data.label_noise=0.0"


def prune_source(run_dir: Path, sample: int) -> dict[str, Any]:
    """Every amount x criterion of one trained model: accuracy, parameters and FLOPs."""
    run = evaluation.load(run_dir)
    model, bundle, device = run.model, run.bundle, run.rt.device
    loader = list(svdata.eval_loader(bundle.test, run.cfg.data))
    example = torch.zeros(1, bundle.in_chans, bundle.img_size, bundle.img_size)
    widths = prunable(model)
    start = time.perf_counter()
    magnitude = magnitude_scores(model)
    data = sample_batches(bundle.train_plain, sample, run.cfg.data.eval_batch_size, seed=0, device=device)
    activity = unit_activity(model, data, {n: (w.act, w.unit_dim) for n, w in widths.items()})
    score_s = time.perf_counter() - start
    out = {"test_accuracy": evaluate(model, loader, device)["accuracy"], "params": sum(p.numel() for p in
                                                                                      model.parameters()),
           "flops": forward_flops(model, example), "score_seconds": score_s, "pruned": {}}
    for by in CRITERIA:
        for amount in AMOUNTS:
            keep = keep_top(activity, amount, magnitude) if by == "activity" else keep_top(magnitude, amount)
            cut = shrink(copy.deepcopy(model), keep)
            out["pruned"][f"{by}@{amount}"] = {"test_accuracy": evaluate(cut, loader, device)["accuracy"],
                                               "params": sum(p.numel() for p in cut.parameters()),
                                               "flops": forward_flops(cut, example)}
    return out


def drop(source: dict[str, Any], key: str) -> float:
    return 100 * (source["test_accuracy"] - source["pruned"][key]["test_accuracy"])


def summarise(sources: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per family: the sources' test accuracy (%), each cut's drop with AdamW and SAM paired by seed, and the largest
    amount by activity whose drop stays within 1 point."""
    table: dict[str, Any] = {}
    for family in FAMILIES:
        accuracy = {s: mean_std([100 * sources[f"{family}/{s}/seed{seed}"]["test_accuracy"] for seed in seeds])
                    for s in SETTINGS}
        rows = {}
        for key in (f"{by}@{a}" for by in CRITERIA for a in AMOUNTS):
            drops = {s: [drop(sources[f"{family}/{s}/seed{seed}"], key) for seed in seeds] for s in SETTINGS}
            diffs = [b - a for a, b in zip(drops["vanilla"], drops["sam"])]
            rows[key] = {"drop_vanilla": mean_std(drops["vanilla"]), "drop_sam": mean_std(drops["sam"]),
                         "sam_minus_vanilla": mean_std(diffs), "n": len(seeds),
                         "paired_t_p": paired_t_p(drops["sam"], drops["vanilla"])}
        within = {s: [max([a for a in AMOUNTS if drop(sources[f"{family}/{s}/seed{seed}"], f"activity@{a}") <= 1.0],
                          default=0.0) for seed in seeds] for s in SETTINGS}
        table[family] = {"test_accuracy_pct": accuracy, "drops": rows, "largest_activity_amount_within_1pt": within}
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper-cpu", type=Path, default=RESULTS / "paper_cpu", help="the paper-cpu suite directory")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--images", "--sample", dest="sample", type=int, default=1024,
                   help="calibration images for the activity ranking")
    p.add_argument("--partial", type=Path, default=RESULTS / "prune_cpu" / "partial.json", help="resume file")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sources = json.loads(args.partial.read_text()) if args.partial.is_file() else {}
    for family in FAMILIES:
        for setting in SETTINGS:
            for seed in seeds:
                key = f"{family}/{setting}/seed{seed}"
                run_dir = args.paper_cpu / "cells" / CELL.format(seed=seed, model=family, setting=setting) / "run"
                if key in sources:
                    continue
                if not (run_dir / "summary.json").is_file():
                    raise SystemExit(f"{run_dir}: not finished; run `sharpvision reproduce paper-cpu` first")
                sources[key] = prune_source(run_dir, args.sample)
                args.partial.parent.mkdir(parents=True, exist_ok=True)
                args.partial.write_text(json.dumps(sources, indent=1) + "\n")
                print(f"{key}: {sources[key]['test_accuracy']:.4f} -> activity@0.5 "
                      f"{sources[key]['pruned']['activity@0.5']['test_accuracy']:.4f}", flush=True)
    write_result({"benchmark": "prune_table", **provenance("cpu"), "seeds": seeds, "amounts": AMOUNTS,
                  "sample": args.sample, "table": summarise(sources, seeds), "sources": sources}, "prune_cpu")
    args.partial.unlink()


if __name__ == "__main__":
    main()
