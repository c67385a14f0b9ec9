"""Model FLOPs utilization of the trainer's step for ViT-S/16 at 224 px on synthetic data, base AdamW and SAM.

    python benchmarks/mfu.py                           # CPU check: batch 8, fp32, TFLOP/s only (no CPU peak)
    python benchmarks/mfu.py --device cuda             # GPU: batch 256, bf16, torch.compile; MFU vs the data sheet

The step is the trainer's own (``build_optimizer`` with fused AdamW on CUDA, ``make_step``, bf16 autocast,
``torch.compile`` of the model with ``--compile``, on by default on CUDA); data is a fixed random batch, so
the figure is the step's alone. FLOPs per image come from ``train_flops_per_image`` (torch's flop counter:
matmuls, convolutions, attention), a SAM step counts two passes, and MFU = FLOP/s / the device's dense peak
(``sharpvision.flops.PEAK_TFLOPS``, or ``--peak-tflops``). Median over ``--repeats`` timed blocks of
``--steps`` steps after ``--warmup`` untimed ones. JSON to benchmarks/results/mfu_<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import provenance, synchronize, write_result
from torch import nn

from sharpvision import models
from sharpvision.config import OptimConfig
from sharpvision.flops import peak_flops, train_flops_per_image
from sharpvision.optim import build_optimizer
from sharpvision.runtime import Runtime
from sharpvision.train import make_step


def measure(name: str, sam: bool, batch: int, rt: Runtime, compile_model: bool, steps: int, repeats: int,
            warmup: int, peak: float | None) -> dict:
    torch.manual_seed(0)
    model = models.create(name, num_classes=1000).to(rt.device)
    size = model.patch_embed.img_size[0]  # the model's own input size (224 for the paper's ViTs)
    x = torch.randn(batch, 3, size, size, device=rt.device)
    y = torch.randint(0, 1000, (batch,), device=rt.device)
    flops = train_flops_per_image(model, x[:2])
    optimizer = build_optimizer(model, OptimConfig(sam=sam), fused=rt.device.type == "cuda")
    step = make_step(torch.compile(model) if compile_model else model, optimizer, nn.CrossEntropyLoss(), 1.0,
                     rt.autocast)

    def block() -> float:
        synchronize(rt.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        synchronize(rt.device)
        return (time.perf_counter() - t0) / steps

    for _ in range(warmup):
        block()
    step_s = statistics.median(block() for _ in range(repeats))
    passes = 2 if sam else 1
    flops_per_s = flops * batch * passes / step_s
    return {"model": name, "optimizer": "SAM(AdamW)" if sam else "AdamW", "img_size": size, "batch": batch,
            "flops_per_image": flops, "step_s_median": step_s, "images_per_s": batch / step_s,
            "tflops_per_s": flops_per_s / 1e12, "mfu": flops_per_s / peak if peak else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="vit_s16")
    p.add_argument("--batch", type=int, help="default 8 (cpu), 256 (cuda)")
    p.add_argument("--steps", type=int, help="steps per timed block (default 2 cpu, 20 cuda)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed blocks (compilation happens here)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for cuda)")
    p.add_argument("--peak-tflops", type=float, help="the device's dense peak, if not in the table")
    p.add_argument("--out", help="JSON path (default benchmarks/results/mfu_<device>.json)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    rt = Runtime(torch.device(args.device), torch.bfloat16 if cuda else None)
    compile_model = cuda if args.compile is None else args.compile
    batch, steps = args.batch or (256 if cuda else 8), args.steps or (20 if cuda else 2)
    peak = peak_flops(rt.device, "bf16" if cuda else "fp32", args.peak_tflops)
    rows = [measure(args.model, sam, batch, rt, compile_model, steps, args.repeats, args.warmup, peak)
            for sam in (False, True)]
    result = {
        "benchmark": "mfu",
        "figure": "model FLOPs utilization of the training step, synthetic data",
        **provenance(rt.device),
        "precision": "bf16 autocast" if cuda else "fp32",
        "compiled": compile_model,
        "peak_tflops": peak / 1e12 if peak else None,
        "results": rows,
    }
    for r in rows:
        mfu = f"MFU {r['mfu']:.1%}" if r["mfu"] is not None else "MFU n/a (no peak for this device)"
        print(f"{r['model']} {r['optimizer']:<11} batch {batch}: {r['images_per_s']:.1f} img/s, "
              f"{r['tflops_per_s']:.3f} TFLOP/s, {mfu}")
    write_result(result, f"mfu_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
