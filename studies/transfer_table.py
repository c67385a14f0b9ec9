"""Transfer table (Chen et al. Table 5 at this machine's scale): does SAM pre-training transfer
better? Micro ViT and ResNet pre-trained with AdamW or SAM, then a linear probe and a full fine-tune on

- ``digits``: scikit-learn's 1,797 handwritten digits (8 px, resized to 28), from the paper-cpu Table 2 sources
  (all ten Fashion-MNIST classes, 2,352 images, 40 epochs, 3 seeds: reused, not retrained);
- ``split``: Fashion-MNIST classes 5-9 (1,200 training images), from sources pre-trained here on classes 0-4
  with the paper-cpu recipe (40 epochs, the family's rho, 2,400 images, 3 seeds).

Decided before the runs (not tuned; no test figure chooses anything): the downstream recipe is the same for every
source, without SAM, so only the pre-training differs: AdamW, no augmentation, 30 epochs, batch 128; the linear
probe at lr 1e-2 without weight decay, the fine-tune at lr 5e-4 with weight decay 0.05. Seed = the source's seed.
The statistic: per model, transfer and mode, SAM minus AdamW test accuracy paired by seed, mean +- std, n = 3, and
a two-sided paired t-test (scipy.stats.ttest_rel); with n = 3 only a large, consistent effect can reach p < 0.05.

Resumable: finished runs (summary.json) are skipped; their small files can be committed.

    python studies/transfer_table.py                    # after `sharpvision reproduce paper-cpu`
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import RESULTS, paired, provenance, write_result

from sharpvision import config
from sharpvision.train import finetune_recipe, read_summary, train

SEEDS = (0, 1, 2)
MODELS = {"vit": ("vit_micro", 0.02), "resnet": ("resnet_micro", 0.2)}  # paper-cpu's names and rhos
SETTINGS = ("vanilla", "sam")
SUITE_CELL = "seed={seed},model={model},setting={setting},data.fraction=0.04,data.label_noise=0.0"
PRETRAIN = ["data.val_fraction=0.02", "schedule.epochs=40", "schedule.warmup_epochs=2", "train.eval_every=5",
            "train.label_smoothing=0.0", "train.log_every=100"]  # paper-cpu's overrides of micro.yaml
DOWNSTREAM = ["schedule.epochs=30", "schedule.warmup_epochs=2", "train.eval_every=10", "train.log_every=100",
              "data.augment=none", "optim.sam=false"]
MODES = {"linear": ["optim.lr=1e-2", "optim.weight_decay=0.0"], "full": ["optim.lr=5e-4", "optim.weight_decay=0.05"]}
TRANSFERS = {"digits": ("digits", ["data.img_size=28"]),
             "split": ("fashion_mnist", ["data.classes=[5,6,7,8,9]", "data.fraction=0.04"])}


def split_source(out: Path, model: str, setting: str, seed: int) -> Path:
    """A source pre-trained on Fashion-MNIST classes 0-4 (2,400 images), trained here when missing."""
    name, rho = MODELS[model]
    run = out / "sources" / f"{model}-{setting}-seed{seed}"
    if not (run / "summary.json").is_file():
        cfg = config.load("micro.yaml", [*PRETRAIN, f"model.name={name}", f"optim.rho={rho}", f"seed={seed}",
                                         f"optim.sam={setting == 'sam'}", "data.classes=[0,1,2,3,4]",
                                         "data.fraction=0.08", f"name={model}-{setting}-seed{seed}"])
        train(cfg, run, resume=run.exists(), progress=False)
    return run


def downstream(source: Path, run: Path, transfer: str, mode: str, seed: int) -> dict[str, Any]:
    """One probe or fine-tune of ``source`` into ``run``; skipped when finished, resumed when interrupted."""
    dataset, extra = TRANSFERS[transfer]
    if not (run / "summary.json").is_file():
        cfg = finetune_recipe(source, dataset, mode, overrides=[*DOWNSTREAM, *MODES[mode], *extra, f"seed={seed}"])
        train(cfg, run, resume=run.exists(), progress=False)
    summary = read_summary(run)
    return {"test_accuracy": summary["test_accuracy"], "train_accuracy": summary["train_accuracy"],
            "source_test_accuracy": read_summary(source)["test_accuracy"], "wall_time_s": summary["wall_time_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper-cpu", type=Path, default=RESULTS / "paper_cpu", help="the paper-cpu suite directory")
    p.add_argument("--out", type=Path, default=RESULTS / "transfer_cpu", help="where the runs go")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--transfers", default=",".join(TRANSFERS), help="digits, split or both")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    transfers = [t for t in args.transfers.split(",") if t in TRANSFERS]
    cells: dict[str, dict[str, Any]] = {}
    for transfer in transfers:
        for model in MODELS:
            for setting in SETTINGS:
                for seed in seeds:
                    if transfer == "digits":
                        source = args.paper_cpu / "cells" / SUITE_CELL.format(seed=seed, model=model,
                                                                              setting=setting) / "run"
                        if not (source / "summary.json").is_file():
                            raise SystemExit(f"{source}: not finished; run `sharpvision reproduce paper-cpu` first")
                    else:
                        source = split_source(args.out, model, setting, seed)
                    for mode in MODES:
                        key = f"{transfer}/{model}/{mode}/{setting}/seed{seed}"
                        cells[key] = downstream(source, args.out / "runs" / key.replace("/", "-"), transfer, mode,
                                                seed)
                        print(f"{key}: {cells[key]['test_accuracy']:.4f}", flush=True)
    table = {}
    for transfer in transfers:
        for model in MODELS:
            for mode in MODES:
                acc = {s: [cells[f"{transfer}/{model}/{mode}/{s}/seed{seed}"]["test_accuracy"] for seed in seeds]
                       for s in SETTINGS}
                table[f"{transfer}/{model}/{mode}"] = paired(acc["vanilla"], acc["sam"])
    write_result({"benchmark": "transfer_table", **provenance("cpu"), "seeds": seeds,
                  "recipe": {"downstream": DOWNSTREAM, "modes": MODES, "transfers": TRANSFERS, "pretrain": PRETRAIN},
                  "table": table, "cells": cells}, "transfer_cpu")


if __name__ == "__main__":
    main()
