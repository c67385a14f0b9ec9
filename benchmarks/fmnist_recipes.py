"""Train the Fashion-MNIST recipes to full length and record test accuracy, wall time and device.

    python benchmarks/fmnist_recipes.py                              # vit, vit_sam, resnet, resnet_sam (GPU)
    python benchmarks/fmnist_recipes.py --recipes vit vit_sam --seeds 0 1 2
    python benchmarks/fmnist_recipes.py --quick                      # CPU check of the script: 2 steps each

Each (recipe, seed) trains into ``runs/fmnist_recipes/<recipe>_s<seed>`` and resumes there when run again,
so an interrupted benchmark loses at most one epoch. The JSON (per-run summaries, mean +- std per recipe,
device, versions, command) goes to benchmarks/results/fmnist_recipes_<device>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import local_device, mean_std, provenance, write_result

from sharpvision import config
from sharpvision.train import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "fmnist"
QUICK_CHECK = ["schedule.epochs=1", "schedule.warmup_epochs=0", "train.max_steps_per_epoch=2", "data.subset_test=256",
         "data.batch_size=32"]


def run(recipe: str, seed: int, out: Path, overrides: list[str], label: str | None = None) -> dict:
    """Train (or resume, or reuse) ``recipe`` with ``seed`` in ``out/<label or recipe>_s<seed>``; its summary."""
    cfg = config.load(CONFIGS / f"{recipe}.yaml", [f"seed={seed}", *overrides])
    # resume=True continues an interrupted run and reuses a finished one only if its recipe is the same
    return train(cfg, out / f"{label or recipe}_s{seed}", resume=True)


# the CPU-sized version of configs/fmnist/vit_sam.yaml that the --quick settings grids use
QUICK = ["model.name=vit_micro", "model.drop_path_rate=0.0", "data.subset_train=12000", "data.batch_size=128",
         "data.num_workers=0", "schedule.epochs=4", "schedule.warmup_epochs=1", "optim.lr=2e-3"]


def settings_grid(doc: str, settings: dict[str, list[str]], out: str,
                  required: set[str]) -> tuple[argparse.Namespace, list[str], Path]:
    """The command line of a settings-by-seeds benchmark: its args, the overrides common to every run, its folder."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--settings", nargs="*", default=list(settings), choices=list(settings))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="CPU-sized runs (see the module docstring)")
    p.add_argument("--out", default=out)
    p.add_argument("overrides", nargs="*", help="dotted overrides for every run, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    if not required <= set(args.settings):
        p.error(f"--settings must include {' and '.join(sorted(required))} (the figures are relative to them)")
    return args, [*(QUICK if args.quick else []), *args.overrides], Path(args.out) / ("quick" if args.quick else "full")


def run_grid(recipe: str, settings: dict[str, list[str]], args: argparse.Namespace, common: list[str],
             out: Path) -> dict[str, list[dict]]:
    """Every chosen setting for every seed, seeds outermost so settings interleave: machine load drifts over a long
    benchmark, and costs should compare like with like."""
    runs: dict[str, list[dict]] = {s: [] for s in args.settings}
    for seed in args.seeds:
        for s in args.settings:
            runs[s].append(run(recipe, seed, out, [*common, *settings[s]], label=s))
    return runs


def aggregate(summaries: list[dict]) -> dict:
    """Mean +- std with n over the runs (seeds) of one setting, for accuracy, wall time and throughput."""
    return {key: mean_std([s[key] for s in summaries]) | {"n": len(summaries)}
            for key in ("test_accuracy", "wall_time_s", "images_per_s")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", default=["vit", "vit_sam", "resnet", "resnet_sam"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--out", default="runs/fmnist_recipes")
    p.add_argument("--quick", action="store_true", help="2 steps per run, to check the script on a CPU")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every run, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    overrides = [*args.overrides, *(QUICK_CHECK if args.quick else [])]
    out = Path(args.out) / ("quick" if args.quick else "full")
    runs = {r: [run(r, s, out, overrides) for s in args.seeds] for r in args.recipes}
    result = {
        "benchmark": "fmnist_recipes",
        "quick": args.quick,
        **provenance(local_device()),
        "recipes": {r: {"aggregate": aggregate(s), "runs": s} for r, s in runs.items()},
    }
    for r, rec in result["recipes"].items():
        acc, wall = rec["aggregate"]["test_accuracy"], rec["aggregate"]["wall_time_s"]
        print(f"{r:<12} test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} (n={acc['n']})   "
              f"wall {wall['mean']:.0f} s")
    write_result(result, f"fmnist_recipes_{local_device()}{'_quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
