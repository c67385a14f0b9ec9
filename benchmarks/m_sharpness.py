"""m-sharpness on a Fashion-MNIST ViT: test accuracy and cost of SAM with one perturbation per m examples.

    python benchmarks/m_sharpness.py --seeds 0 1 2 data.root=.data/fashion-mnist       # GPU: the full recipe
    python benchmarks/m_sharpness.py --quick --seeds 0 1                                # CPU: a small honest run

Every setting is ``configs/fmnist/vit_sam.yaml`` (ViT-S/4, AdamW, rho 0.1, batch 128) with ``optim.m`` changed:
``base`` (SAM off), m = 128 (one perturbation per batch), 32 and 8 (the batch split into 4 and 16 groups, each with
its own ascent, as DDP workers with 32 or 8 examples each would perturb). Foret et al. report that smaller m
generalizes better. Figures per setting, mean +- std over seeds: test accuracy, training images/s and cost = base
images/s / the setting's; for m below the batch, the mean test accuracy minus m = 128's. ``--quick``: vit_micro,
12k images, 4 epochs (sam_variants.py's CPU size). Runs resume (``runs/m_sharpness/``); JSON to
benchmarks/results/m_sharpness_<device>[_quick].json.
"""

from __future__ import annotations

from common import local_device, provenance, write_result
from fmnist_recipes import aggregate, run_grid, settings_grid

RECIPE = "vit_sam"
SETTINGS = {"base": ["optim.sam=false"], "m128": ["optim.m=128"], "m32": ["optim.m=32"], "m8": ["optim.m=8"]}
ONE_PER_BATCH = "m128"  # m = the recipe's batch: the SAM every smaller m is compared with


def main() -> int:
    args, common, out = settings_grid(__doc__, SETTINGS, "runs/m_sharpness", required={"base"})
    runs = run_grid(RECIPE, SETTINGS, args, common, out)
    table = {s: aggregate(summaries) for s, summaries in runs.items()}
    for row in table.values():
        row["cost_vs_base"] = table["base"]["images_per_s"]["mean"] / row["images_per_s"]["mean"]
    for name, row in table.items() if ONE_PER_BATCH in table else ():
        if name not in ("base", ONE_PER_BATCH):  # mean test accuracy minus one perturbation per batch's
            row["test_accuracy_vs_one_per_batch"] = (row["test_accuracy"]["mean"]
                                                     - table[ONE_PER_BATCH]["test_accuracy"]["mean"])
    result = {"benchmark": "m_sharpness", "quick": args.quick, **provenance(local_device()),
              "recipe": f"configs/fmnist/{RECIPE}.yaml", "overrides": common, "settings": SETTINGS,
              "table": table, "runs": runs}
    for s, row in table.items():
        acc = row["test_accuracy"]
        print(f"{s:<6} test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} (n={acc['n']})   "
              f"cost x{row['cost_vs_base']:.2f}")
    write_result(result, f"m_sharpness_{local_device()}{'_quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
