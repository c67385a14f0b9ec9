"""LookSAM's alpha with AdamW, ours against pytorch-optimizer's: does any alpha train where 0.7 fails?

    python studies/looksam_alpha.py                       # vit_micro, 4,096 images, 4 epochs, ~10 min on 2 cores

LookSAM-5 with the paper's alpha = 0.7 ends near chance on ``vit_micro`` (docs/benchmarks.md, and paper-cpu's
variants grid). Our LookSAM normalises the stored direction g_v globally (Liu et al.'s Algorithm 1);
pytorch-optimizer's ``LookSAM`` does it per tensor. Both run here on the same data, batches and initial weights,
with AdamW (lr 2e-3, weight decay 0.05, constant lr, no clipping), rho 0.02 (paper-cpu's ViT rho), k = 5, for a
sweep of alpha; alpha = 0 is SAM-5 and plain AdamW is the reference. Accuracy is on a held-out validation split of
the training set (never the test set), so an alpha can be chosen from this table.
JSON to benchmarks/results/looksam_alpha_cpu.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from common import provenance, write_result

from sharpvision import config, models
from sharpvision import data as svdata
from sharpvision.optim.variants import LookSAM

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "fmnist" / "vit_sam.yaml"
K = 5


def stack(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole (small) split as two tensors: one fixed batch order for every setting."""
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.tensor(ys)


def run(cfg: config.Config, bundle: svdata.DataBundle, splits: tuple[torch.Tensor, ...], impl: str,
        alpha: float | None, epochs: int, rho: float) -> dict:
    """Train from the seed's initial weights; impl is 'adamw', 'ours' or 'peer'. Per-epoch train loss, val acc."""
    x_train, y_train, x_val, y_val = splits
    torch.manual_seed(cfg.seed)
    model = models.from_config(cfg, bundle)
    adamw = {"lr": 2e-3, "weight_decay": 0.05}
    if impl == "adamw":
        opt = torch.optim.AdamW(model.parameters(), **adamw)
    elif impl == "ours":
        opt = LookSAM(model.parameters(), torch.optim.AdamW, rho=rho, alpha=alpha, **adamw)
    else:
        from pytorch_optimizer import LookSAM as PeerLookSAM  # a peer of the studies only (make bench-deps)
        opt = PeerLookSAM(model.parameters(), torch.optim.AdamW, rho=rho, k=K, alpha=alpha, **adamw)
    order = torch.Generator().manual_seed(cfg.seed)
    batch, step, curve = cfg.data.batch_size, 0, []
    for epoch in range(epochs):
        model.train()
        perm, losses = torch.randperm(len(x_train), generator=order), []
        for start in range(0, len(perm) - batch + 1, batch):
            x, y = x_train[perm[start:start + batch]], y_train[perm[start:start + batch]]

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if impl == "adamw":
                loss = closure()
                opt.step()
            elif impl == "ours" and step % K:
                loss = closure()
                opt.skip_step()
            elif impl == "ours":
                loss = opt.step(closure)
            else:  # pytorch-optimizer: gradient at w first, then step(closure) (at w + e on its SAM steps)
                loss = closure()
                opt.step(closure)
            losses.append(float(loss.detach()))
            step += 1
        model.eval()
        with torch.no_grad():
            val = float((model(x_val).argmax(1) == y_val).float().mean())
        curve.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_accuracy": val})
    return {"impl": impl, "alpha": alpha, "curve": curve, "val_accuracy": curve[-1]["val_accuracy"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", type=float, nargs="*", default=[0.0, 0.1, 0.3, 0.7])
    p.add_argument("--peer-alphas", type=float, nargs="*", default=[0.1, 0.3, 0.7])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--rho", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", help="JSON path (default benchmarks/results/looksam_alpha_cpu.json)")
    args = p.parse_args()
    cfg = config.load(RECIPE, ["model.name=vit_micro", "model.drop_path_rate=0.0", f"data.root={args.data_root}",
                               "data.augment=none", "data.num_workers=0", "data.batch_size=128",
                               f"data.subset_train={args.images}", "data.val_fraction=0.02",
                               f"seed={args.seed}"])
    bundle = svdata.build_datasets(cfg.data)
    splits = (*stack(bundle.train), *stack(bundle.val))  # read once, shared by every setting
    settings = [("adamw", None)] + [("ours", a) for a in args.alphas] + [("peer", a) for a in args.peer_alphas]
    results = []
    for impl, alpha in settings:
        results.append(run(cfg, bundle, splits, impl, alpha, args.epochs, args.rho))
        r = results[-1]
        print(f"{impl:<6} alpha {alpha}: val accuracy {r['val_accuracy']:.3f}, "
              f"train loss {r['curve'][-1]['train_loss']:.3f}", flush=True)
    write_result({"benchmark": "looksam_alpha", **provenance("cpu"), "model": "vit_micro", "k": K, "rho": args.rho,
                  "epochs": args.epochs, "train_images": len(bundle.train), "val_images": len(bundle.val),
                  "seed": args.seed, "base": "AdamW lr 2e-3, weight decay 0.05, constant lr, no clipping",
                  "results": results}, "looksam_alpha_cpu", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
