"""Peak memory of a SAM step against its base step: SAM should need one extra copy of the
weights and no more. The trainer's own step (``make_step``, AdamW, gradient clipping) on each micro model at batch
128, after one step has made the optimizer state; peak tensor bytes from the CUDA allocator or, on CPU, from
torch.profiler's allocation timeline (``sharpvision.memory.peak_bytes``). Exact, not timed: the figures do not move
with machine load.

    python benchmarks/sam_memory.py [--device cuda]
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from functools import partial

import torch
from common import local_device, provenance, write_result
from torch import nn

from sharpvision import models
from sharpvision.config import OptimConfig
from sharpvision.memory import peak_bytes
from sharpvision.optim import build_optimizer
from sharpvision.train.step import make_step

MODELS = ("vit_micro", "mixer_micro", "resnet_micro", "convnext_micro")


def measure(name: str, batch: int, device: torch.device) -> dict[str, float]:
    peaks, weights, bn = {}, 0, 0
    for sam in (False, True):
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=28, in_chans=1).to(device)
        step = make_step(model, build_optimizer(model, OptimConfig(sam=sam, rho=0.05)), nn.CrossEntropyLoss(), 1.0,
                         nullcontext)
        x, y = torch.randn(batch, 1, 28, 28, device=device), torch.randint(0, 10, (batch,), device=device)
        step(x, y)
        peaks["sam" if sam else "base"] = peak_bytes(partial(step, x, y), device)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        bn = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "running_" in n)
    extra = peaks["sam"] - peaks["base"]
    return {"base_peak_mb": peaks["base"] / 2**20, "sam_peak_mb": peaks["sam"] / 2**20,
            "ratio": peaks["sam"] / peaks["base"], "weights_mb": weights / 2**20, "extra_mb": extra / 2**20,
            "extra_beyond_weights_and_bn_stats_bytes": extra - weights - bn}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=local_device())
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    device = torch.device(args.device)
    rows = {name: measure(name, args.batch, device) for name in MODELS}
    for name, r in rows.items():
        print(f"{name:16} base {r['base_peak_mb']:7.1f} MB  SAM {r['sam_peak_mb']:7.1f} MB  ({r['ratio']:.3f}x; "
              f"weights {r['weights_mb']:.2f} MB, extra {r['extra_mb']:.2f} MB)")
    write_result({"benchmark": "sam_memory", **provenance(device), "batch": args.batch, "models": rows},
                 f"sam_memory_{device.type}")


if __name__ == "__main__":
    main()
