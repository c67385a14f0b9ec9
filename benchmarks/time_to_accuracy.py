"""Wall time to a test accuracy on Fashion-MNIST: a ViT with SAM and a ResNet-18 without, each with its recipe.

    python benchmarks/time_to_accuracy.py data.root=.data/fashion-mnist       # GPU: vit_sam and resnet, 93%
    python benchmarks/time_to_accuracy.py --quick                             # CPU: micro models, 80%, small data

Each recipe (``configs/fmnist/vit_sam.yaml``: ViT-S/4 + SAM; ``configs/fmnist/resnet.yaml``: ResNet-18, SGD)
trains at full length with the test set evaluated after every epoch; the figure is the trainer's cumulative
wall time (``wall_time_s`` of the epoch record: training and evaluation, from the first step, so model build
and data loading are not in it, compilation is) at the first epoch whose test accuracy reaches ``--target``;
None if it never does. Runs resume (``runs/time_to_accuracy/``). ``--quick`` (vit_micro with SAM and
resnet_micro, 20k training / 2k test images, 3 epochs, target 0.80) is CPU-sized: it checks the machinery; its
times say nothing about a GPU. JSON to benchmarks/results/time_to_accuracy_<device>[_quick].json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import local_device, provenance, write_result
from fmnist_recipes import run

RECIPES = ("vit_sam", "resnet")
QUICK = {"vit_sam": ["model.name=vit_micro", "model.drop_path_rate=0.0", "optim.lr=2e-3", "data.batch_size=128"],
         "resnet": ["model.name=resnet_micro"]}
QUICK_ALL = ["data.subset_train=20000", "data.subset_test=2000", "data.num_workers=0", "schedule.epochs=3",
             "schedule.warmup_epochs=1"]


def crossing(run_dir: Path, target: float) -> dict:
    """The first epoch record reaching ``target`` test accuracy (epoch, accuracy, wall time), or Nones."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "test_accuracy" in r and "wall_time_s" in r]
    hit = next((r for r in evaluated if r["test_accuracy"] >= target), None)
    curve = [(r["epoch"] + 1, r["wall_time_s"], r["test_accuracy"]) for r in evaluated]
    return {"epoch": hit["epoch"] + 1 if hit else None, "wall_time_s": hit["wall_time_s"] if hit else None,
            "curve_epoch_wall_acc": curve}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=float, help="test accuracy to reach (default 0.93; 0.80 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="CPU-sized runs (see the module docstring)")
    p.add_argument("--out", default="runs/time_to_accuracy")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every run, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    target = args.target if args.target is not None else (0.80 if args.quick else 0.93)
    out = Path(args.out) / ("quick" if args.quick else "full")
    rows = {}
    for recipe in RECIPES:
        overrides = [*(QUICK[recipe] + QUICK_ALL if args.quick else []), "train.eval_every=1", *args.overrides]
        summary = run(recipe, args.seed, out, overrides)
        rows[recipe] = {"model": summary["model"], "optimizer": summary["optimizer"],
                        "final_test_accuracy": summary["test_accuracy"], "total_wall_time_s": summary["wall_time_s"],
                        "images_per_s": summary["images_per_s"], "overrides": overrides,
                        **crossing(out / f"{recipe}_s{args.seed}", target)}
    result = {"benchmark": "time_to_accuracy", "quick": args.quick, **provenance(local_device()),
              "target_test_accuracy": target, "results": rows}
    for recipe, r in rows.items():
        reached = (f"{target:.0%} at epoch {r['epoch']} after {r['wall_time_s']:.0f} s" if r["epoch"]
                   else f"never reached {target:.0%}")
        print(f"{recipe:<8} {r['model']} {r['optimizer']}: {reached}; final {r['final_test_accuracy']:.4f} "
              f"in {r['total_wall_time_s']:.0f} s")
    write_result(result, f"time_to_accuracy_{local_device()}{'_quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
