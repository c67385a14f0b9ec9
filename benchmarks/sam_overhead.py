"""Time of a SAM step over a base-optimizer step: same model, same batch, interleaved in one process.

    python benchmarks/sam_overhead.py                      # CPU: vit_micro and resnet_micro, batch 128, 28 px
    python benchmarks/sam_overhead.py --device cuda        # GPU: vit_s4 and resnet18_cifar, batch 256, bf16

Each repeat times one base step and one SAM step (alternating which goes first) with the trainer's own
step function (``sharpvision.train.make_step``); the figure is the ratio of the medians, and the median
of the per-repeat ratios. Expected close to 2.0: SAM runs two forward/backward passes. The JSON (figures,
device, versions, command) goes to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import provenance, write_result
from torch import nn

from sharpvision import models
from sharpvision.optim import SAM
from sharpvision.train import Runtime, make_step


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(name: str, batch: int, img: int, device: torch.device, amp: torch.dtype | None, repeats: int,
            warmup: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 1, img, img, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rt = Runtime(device, amp)
    steps = {}
    for kind in ("base", "sam"):
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=img, in_chans=1).to(device)
        params = sum(p.numel() for p in model.parameters())
        if kind == "sam":
            opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3, weight_decay=0.05)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        step = make_step(model, opt, nn.CrossEntropyLoss(), 1.0, rt.autocast)
        steps[kind] = lambda step=step: step(x, y)
    for _ in range(warmup):
        for fn in steps.values():
            timed(fn, device)
    times = {"base": [], "sam": []}
    for r in range(repeats):
        order = ("base", "sam") if r % 2 == 0 else ("sam", "base")
        for kind in order:
            times[kind].append(timed(steps[kind], device))
    base, sam = statistics.median(times["base"]), statistics.median(times["sam"])
    pair = statistics.median(s / b for s, b in zip(times["sam"], times["base"]))
    return {"model": name, "params": params, "batch": batch, "img_size": img, "repeats": repeats,
            "base_step_s_median": base, "sam_step_s_median": sam, "ratio_of_medians": sam / base,
            "median_of_pair_ratios": pair}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", help="default: vit_micro resnet_micro (cpu), vit_s4 resnet18_cifar (cuda)")
    p.add_argument("--batch", type=int, help="default 128 (cpu), 256 (cuda)")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", help="JSON path (default benchmarks/results/sam_overhead_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    names = args.models or (["vit_s4", "resnet18_cifar"] if cuda else ["vit_micro", "resnet_micro"])
    batch = args.batch or (256 if cuda else 128)
    amp = torch.bfloat16 if cuda else None
    rows = [measure(n, batch, 28, device, amp, args.repeats, args.warmup) for n in names]
    result = {
        "benchmark": "sam_overhead",
        "figure": "SAM step time / AdamW step time, same model and batch, interleaved, medians",
        **provenance(device),
        "precision": "bf16 autocast" if amp else "fp32",
        "results": rows,
    }
    for r in rows:
        base_ms, sam_ms = r["base_step_s_median"] * 1e3, r["sam_step_s_median"] * 1e3
        print(f"{r['model']:<16} base {base_ms:8.1f} ms   SAM {sam_ms:8.1f} ms"
              f"   ratio {r['ratio_of_medians']:.3f} (median of pairs {r['median_of_pair_ratios']:.3f})")
    write_result(result, f"sam_overhead_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
