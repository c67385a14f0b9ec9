"""Efficient SAM on a Fashion-MNIST ViT: each variant's cost next to base AdamW and full SAM, and the accuracy it keeps.

    python benchmarks/sam_variants.py --seeds 0 1 2 data.root=.data/fashion-mnist      # GPU: the full recipe
    python benchmarks/sam_variants.py --quick --seeds 0 1                               # CPU: a small honest run

Every setting is ``configs/fmnist/vit_sam.yaml`` (ViT-S/4, 60 epochs, AdamW, rho 0.1) with one change:
``base`` (sam off), ``sam``, ``sam_every_5`` (SAM-5), ``looksam_5`` (LookSAM, k 5) and ``gsam`` (alpha 0.4, rho
following the lr down to 0.01). Figures per setting, mean +- std over seeds: test accuracy, training images/s,
**cost** = base images/s / the setting's (training time per image, eval excluded) and **gain kept** =
(accuracy - base) / (SAM - base), reported only when SAM's gain is positive. The goal: a variant
at <= 1.35x the base cost keeping >= 80% of SAM's gain. ``--quick`` is a CPU-sized version (vit_micro, 12k
images, 4 epochs): it checks the machinery and measures cost, but at that size SAM's accuracy gain is within
seed noise. Runs resume (``runs/sam_variants/``); JSON to benchmarks/results/sam_variants_<device>[_quick].json.
"""

from __future__ import annotations

from common import local_device, provenance, write_result
from fmnist_recipes import aggregate, run_grid, settings_grid

RECIPE = "vit_sam"
SETTINGS = {
    "base": ["optim.sam=false"],
    "sam": [],
    "sam_every_5": ["optim.sam_every=5"],
    "looksam_5": ["optim.variant=looksam", "optim.sam_every=5"],
    "gsam": ["optim.variant=gsam", "optim.rho_min=0.01"],
}
def main() -> int:
    args, common, out = settings_grid(__doc__, SETTINGS, "runs/sam_variants", required={"base", "sam"})
    runs = run_grid(RECIPE, SETTINGS, args, common, out)
    table = {s: aggregate(summaries) for s, summaries in runs.items()}
    base_speed, base_acc = table["base"]["images_per_s"]["mean"], table["base"]["test_accuracy"]["mean"]
    sam_gain = table["sam"]["test_accuracy"]["mean"] - base_acc
    for row in table.values():
        row["cost_vs_base"] = base_speed / row["images_per_s"]["mean"]
        row["gain_kept"] = (row["test_accuracy"]["mean"] - base_acc) / sam_gain if sam_gain > 0 else None
    result = {
        "benchmark": "sam_variants",
        "quick": args.quick,
        **provenance(local_device()),
        "recipe": f"configs/fmnist/{RECIPE}.yaml", "overrides": common, "settings": SETTINGS,
        "sam_gain": sam_gain,
        "table": table,
        "runs": runs,
    }
    for s, row in table.items():
        acc = row["test_accuracy"]
        kept = "n/a (SAM gained nothing)" if row["gain_kept"] is None else f"{row['gain_kept']:.0%}"
        print(f"{s:<12} test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} (n={acc['n']})   "
              f"cost x{row['cost_vs_base']:.2f}   gain kept {kept}")
    write_result(result, f"sam_variants_{local_device()}{'_quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
