"""How fast LookSAM's stored direction goes stale: cos(g, g_s) and cos between consecutive batches' g_v.

    python studies/looksam_drift.py                                  # vit_micro at init, rho 0.1 and 0.05
    python studies/looksam_drift.py --device cuda --model vit_s4 --batch 256 --data-root .data/fashion-mnist

LookSAM reuses g_v (the part of the SAM gradient g_s orthogonal to the plain gradient g, from the last SAM
step) for k - 1 steps at 0.7 ||g||; that helps only if g_v changes slowly. At the initial weights of
``configs/fmnist/vit_sam.yaml``'s model (or ``--model``), for
``--batches`` consecutive Fashion-MNIST training batches (fixed weights, no step), this computes g_v with
``LookSAM`` itself and records cos(g, g_s), ||g_v|| / ||g|| and cos(g_v of batch i, g_v of batch i + 1).
JSON to benchmarks/results/looksam_drift_<device>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import provenance, write_result
from torch import nn

from sharpvision import config, models
from sharpvision import data as svdata
from sharpvision.optim.variants import LookSAM

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "fmnist" / "vit_sam.yaml"


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in tensors])


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def drift(cfg: config.Config, rho: float, batches: int, device: torch.device) -> dict:
    bundle = svdata.build_datasets(cfg.data)
    torch.manual_seed(cfg.seed)
    model = models.from_config(cfg, bundle).to(device)
    opt = LookSAM(model.parameters(), torch.optim.AdamW, rho=rho, lr=cfg.optim.lr)
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())
    rows, previous = [], None
    for i, (x, y) in enumerate(svdata.train_loader_for_epoch(bundle, cfg.data, cfg.seed, 0)):
        if i == batches:
            break
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        g = flat([p.grad for p in params])
        opt.perturb()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        g_s = flat([p.grad for p in params])
        opt.shape_gradient()  # LookSAM stores g_v here
        opt.unperturb()
        g_v = flat([opt._g_v[p] for p in params])
        rows.append({"batch": i, "cos_g_gs": cos(g, g_s), "gv_over_g": float(g_v.norm() / g.norm()),
                     "cos_gv_previous": cos(g_v, previous) if previous is not None else None})
        previous = g_v
        opt._shaped = False
    return {"rho": rho, "batches": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="vit_micro")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rho", type=float, nargs="*", default=[0.1, 0.05])
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", help="JSON path (default benchmarks/results/looksam_drift_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = config.load(RECIPE, [f"model.name={args.model}", f"data.root={args.data_root}", "data.augment=none",
                             "data.num_workers=0", f"data.batch_size={args.batch}", "model.drop_path_rate=0.0"])
    results = [drift(cfg, rho, args.batches, device) for rho in args.rho]
    for r in results:
        line = ", ".join(f"cos(g,g_s) {b['cos_g_gs']:.2f}" + (f" cos(g_v,prev) {b['cos_gv_previous']:.2f}"
                                                             if b["cos_gv_previous"] is not None else "")
                         for b in r["batches"])
        print(f"rho {r['rho']}: {line}")
    write_result({"benchmark": "looksam_drift", **provenance(device), "model": args.model, "batch": args.batch,
                  "precision": "fp32", "results": results}, f"looksam_drift_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
