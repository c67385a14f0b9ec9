"""Our trainer against the SAM loop a user writes today, side by side in one process: images/s and the ratio.

    python benchmarks/peer_loop.py                      # CPU: vit_micro, batch 128, fp32, 3 x 20 timed steps
    python benchmarks/peer_loop.py --device cuda --data-root .data/fashion-mnist   # GPU: vit_s4, batch 256, bf16

Same model (the same timm ``VisionTransformer``, same init), data (Fashion-MNIST train images, basic crop + flip),
batch size, precision, SAM (rho 0.05 around AdamW, grad clip 1.0) and number of steps on both sides.

- **ours**: ``sharpvision.train.train`` on ``configs/fmnist/vit_sam.yaml`` as a user runs it: the device-resident
  loader (``data.loader=device``), fused AdamW on CUDA, ``torch.compile`` with ``--compile`` (default on CUDA),
  metrics read once per log interval.
- **peer**: the loop from pytorch-optimizer's README: its ``SAM`` (``first_step`` / ``second_step``) around
  ``torch.optim.AdamW``, a ``torch.utils.data.DataLoader`` over ``torchvision.datasets.FashionMNIST`` with
  torchvision transforms (``--workers``, pinned memory, persistent workers), autocast on CUDA, ``loss.item()``
  each step for the running loss, a cosine lr schedule.

Both run ``--epochs`` passes over the same ``--steps`` x batch examples; the first pass is warm-up (workers,
compilation, caches) and is not counted; the figure is the median images/s over the other passes, and
ours / peer. Needs pytorch-optimizer (``make bench-deps``). JSON to benchmarks/results/peer_loop_<device>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from common import provenance, synchronize, write_result
from pytorch_optimizer import SAM as PeerSAM
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from sharpvision import config, models
from sharpvision.train import train

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "fmnist" / "vit_sam.yaml"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MEAN, STD = (0.2860,), (0.3530,)  # Fashion-MNIST, as our data module


def ours(cfg: config.Config, out: Path) -> list[float]:
    """Images/s of each epoch of our trainer (from its metrics.jsonl)."""
    train(cfg, out, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["images_per_s"] for r in records if "train_loss" in r]


def torchvision_fmnist(data_root: Path, tmp: Path) -> torchvision.datasets.FashionMNIST:
    """torchvision's FashionMNIST over our gzipped IDX files (it wants them unpacked under FashionMNIST/raw)."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        with gzip.open(data_root / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    tf = v2.Compose([v2.RandomCrop(28, padding=3), v2.RandomHorizontalFlip(), v2.ToImage(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    return torchvision.datasets.FashionMNIST(str(tmp), train=True, transform=tf, download=False)


def peer(cfg: config.Config, dataset, device: torch.device, workers: int) -> list[float]:
    """Images/s of each epoch of the pytorch-optimizer + DataLoader loop."""
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model.name, num_classes=10, img_size=28, in_chans=1,
                          drop_path_rate=cfg.model.drop_path_rate).to(device)
    opt = PeerSAM(model.parameters(), torch.optim.AdamW, rho=cfg.optim.rho, lr=cfg.optim.lr,
                  weight_decay=cfg.optim.weight_decay)
    steps = cfg.train.max_steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * cfg.schedule.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    loader = DataLoader(Subset(dataset, range(steps * cfg.data.batch_size)), batch_size=cfg.data.batch_size,
                        shuffle=True, drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    speeds = []
    for _ in range(cfg.schedule.epochs):
        model.train()
        t0, seen, running = time.perf_counter(), 0, 0.0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with amp:
                loss = criterion(model(x), y)
            loss.backward()
            opt.first_step(zero_grad=True)
            with amp:
                criterion(model(x), y).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
            opt.second_step(zero_grad=True)
            sched.step()
            running += loss.item()
            seen += len(y)
        synchronize(device)
        speeds.append(seen / (time.perf_counter() - t0))
    return speeds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", help="default vit_micro (cpu), vit_s4 (cuda)")
    p.add_argument("--batch", type=int, help="default 128 (cpu), 256 (cuda)")
    p.add_argument("--steps", type=int, help="steps per epoch (default 20 cpu, 200 cuda)")
    p.add_argument("--epochs", type=int, default=4, help="passes; the first is warm-up")
    p.add_argument("--workers", type=int, help="peer DataLoader workers (default: cpu count - 1, at most 8)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="ours: train.compile (default on for cuda)")
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", help="JSON path (default benchmarks/results/peer_loop_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    steps, batch = args.steps or (200 if cuda else 20), args.batch or (256 if cuda else 128)
    workers = args.workers if args.workers is not None else max(0, min(8, (os.cpu_count() or 1) - 1))
    compiled = cuda if args.compile is None else args.compile
    overrides = [f"model.name={args.model or ('vit_s4' if cuda else 'vit_micro')}", f"data.root={args.data_root}",
                 f"data.batch_size={batch}", f"data.subset_train={steps * batch}", "data.subset_test=512",
                 "data.loader=device", f"schedule.epochs={args.epochs}", "schedule.warmup_epochs=0",
                 f"train.max_steps_per_epoch={steps}", f"train.eval_every={args.epochs}", f"train.device={args.device}",
                 f"train.compile={str(compiled).lower()}", "train.log_every=50", "optim.rho=0.05"]
    cfg = config.load(RECIPE, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = torchvision_fmnist(Path(args.data_root), Path(tmp) / "tv")
        runs = {"ours": [], "peer": []}
        # alternate the order over two rounds so neither side always runs on a cold (or hot) machine
        for i, side in enumerate(("ours", "peer", "peer", "ours")):
            speeds = (ours(cfg, Path(tmp) / f"ours{i}") if side == "ours" else peer(cfg, dataset, device, workers))
            runs[side].extend(speeds[1:])  # the first epoch is warm-up
    med = {side: statistics.median(v) for side, v in runs.items()}
    result = {
        "benchmark": "peer_loop",
        "figure": "training images/s, ours (sharpvision train) vs timm + pytorch-optimizer SAM + DataLoader loop",
        **provenance(device),
        "precision": "bf16 autocast" if cuda else "fp32",
        "model": cfg.model.name, "batch": batch, "steps_per_epoch": steps, "timed_epochs_per_round": args.epochs - 1,
        "rounds": 2, "ours_compiled": compiled, "ours_loader": "device", "peer_workers": workers,
        "images_per_s": {side: {"median": m, "all": runs[side]} for side, m in med.items()},
        "ratio_ours_over_peer": med["ours"] / med["peer"],
    }
    print(f"{cfg.model.name}, batch {batch}: ours {med['ours']:.0f} img/s, peer {med['peer']:.0f} img/s, "
          f"ratio {result['ratio_ours_over_peer']:.2f}")
    write_result(result, f"peer_loop_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
