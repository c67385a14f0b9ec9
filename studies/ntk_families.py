"""NTK condition number at initialization across the four model families (Chen et al. ICLR 2022, Table 1).

    python studies/ntk_families.py                                  # CPU: the four micro models, n = 64 and 128
    python studies/ntk_families.py --device cuda --models resnet18_cifar vit_s4 mixer_s4 convnext_n_cifar

kappa = lambda_max / lambda_min of the empirical NTK J J^T (summed logits, n x n, float64) on n Fashion-MNIST
training images, for ``--seeds`` initializations of each model; the paper's ordering is ResNet < ViT < Mixer.
kappa grows with n, so compare families only at equal n. A zero-initialized classifier (timm's MLP-Mixer) makes
the kernel at init the Gram matrix of the head's features plus 1, of rank <= width + 1: kappa is inf beyond that n.
Results go to benchmarks/results/ntk_families_<device>.json.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import provenance, write_result

from sharpvision import config, models
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.ntk import ntk_condition_number
from sharpvision.data import build_datasets


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", default=["resnet_micro", "vit_micro", "mixer_micro", "convnext_micro"])
    p.add_argument("--images", "--n", dest="n", type=int, nargs="*", default=[64, 128], help="inputs in the kernel")
    p.add_argument("--seeds", type=int, default=3, help="initializations per model")
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    cfg = config.from_dict(config.apply_overrides({"data": {"augment": "none"}}, args.overrides))
    (x, _), = sample_batches(build_datasets(cfg.data).train, max(args.n), max(args.n), seed=0, device=args.device)
    rows = []
    for name in args.models:
        for n in args.n:
            kappas = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                model = models.create(name, num_classes=10, img_size=x.shape[-1], in_chans=x.shape[1])
                kappas.append(ntk_condition_number(model.to(args.device), x[:n])["kappa"])
            row = {"model": name, "family": models.family(name), "params": sum(q.numel() for q in model.parameters()),
                   "n": n, "reduction": "sum", "dtype": "float64", "kappa_per_seed": kappas,
                   "zero_initialized_head": bool((model.get_classifier().weight == 0).all()),
                   "kappa_median": statistics.median(kappas)}
            rows.append(row)
            print(f"{name:<16} n={n:<4} kappa median {row['kappa_median']:.4g}  per seed "
                  + ", ".join(f"{k:.3g}" for k in kappas))
    write_result({"benchmark": "ntk_families", "figure": "NTK condition number at initialization",
                  **provenance(args.device), "seeds": args.seeds, "results": rows}, f"ntk_families_{args.device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
