"""Cost of SAM and its efficient variants over the base optimizer: same model, same batch, interleaved in one process.

    python benchmarks/sam_overhead.py                      # CPU: vit_micro and resnet_micro, batch 128, 28 px, fp32
    python benchmarks/sam_overhead.py --device cuda        # GPU: vit_s4 and resnet18_cifar, batch 256, bf16, compiled

Each setting is the trainer's own optimizer and step (``build_optimizer`` + ``make_step``, fused AdamW on CUDA,
``torch.compile`` of the model with ``--compile``, on by default on CUDA): base AdamW, SAM, SAM every k steps,
LookSAM (k) and GSAM. A timed block is k consecutive steps (so SAM-k and LookSAM pay their one SAM step per
block), divided by k; each repeat times every setting once, in a rotating order. Figures: the median time
per step and its ratio to the base optimizer's (ratio of medians, and median of the per-repeat ratios).
Expected: SAM and GSAM about 2.0 (two passes), SAM-k and LookSAM about 1 + 1/k. The JSON (figures, device,
versions, command) goes to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from common import interleaved, provenance, ratios, write_result
from torch import nn

from sharpvision import models
from sharpvision.config import OptimConfig
from sharpvision.optim import build_optimizer
from sharpvision.runtime import Runtime
from sharpvision.train import make_step


def settings(k: int) -> dict[str, dict]:
    """Optimizer settings by name: the OptimConfig fields each one changes from plain AdamW."""
    return {"base": {}, "sam": {"sam": True}, f"sam_every_{k}": {"sam": True, "sam_every": k},
            f"looksam_{k}": {"sam": True, "variant": "looksam", "sam_every": k},
            "gsam": {"sam": True, "variant": "gsam", "rho_min": 0.01}}


def block(name: str, fields: dict, batch: int, img: int, rt: Runtime, compile_model: bool,
          k: int) -> tuple[Callable[[], None], int]:
    """A function running k training steps of a fresh model with optimizer setting ``fields``; and its size."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=img, in_chans=1).to(rt.device)
    opt_cfg = OptimConfig(lr=1e-3, weight_decay=0.05, rho=0.05, **fields)
    opt_cfg.check()
    optimizer = build_optimizer(model, opt_cfg, fused=rt.device.type == "cuda")
    forward = torch.compile(model) if compile_model else model
    counter = [0]
    step = make_step(forward, optimizer, nn.CrossEntropyLoss(), 1.0, rt.autocast, sam_every=opt_cfg.sam_every,
                     step_index=lambda: counter[0])
    x = torch.randn(batch, 1, img, img, device=rt.device)
    y = torch.randint(0, 10, (batch,), device=rt.device)

    def run() -> None:
        for _ in range(k):
            step(x, y)
            counter[0] += 1
    return run, sum(p.numel() for p in model.parameters())


def measure(name: str, batch: int, img: int, rt: Runtime, compile_model: bool, k: int, repeats: int,
            warmup: int) -> dict:
    blocks, params = {}, 0
    for setting, fields in settings(k).items():
        blocks[setting], params = block(name, fields, batch, img, rt, compile_model, k)
    times = {s: [t / k for t in ts] for s, ts in interleaved(blocks, repeats, warmup, rt.device).items()}
    rows = {s: {"step_s_median": statistics.median(times[s]), **r} for s, r in ratios(times, "base").items()}
    return {"model": name, "params": params, "batch": batch, "img_size": img, "k": k, "repeats": repeats,
            "settings": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", help="default: vit_micro resnet_micro (cpu), vit_s4 resnet18_cifar (cuda)")
    p.add_argument("--batch", type=int, help="default 128 (cpu), 256 (cuda)")
    p.add_argument("--k", type=int, default=5, help="SAM-k and LookSAM period (LookSAM paper: 5)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for cuda, off for cpu)")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--warmup", type=int, default=2, help="untimed blocks per setting (compilation happens here)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/sam_overhead_<device>.json)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    rt = Runtime(torch.device(args.device), torch.bfloat16 if cuda else None)
    compile_model = cuda if args.compile is None else args.compile
    names = args.models or (["vit_s4", "resnet18_cifar"] if cuda else ["vit_micro", "resnet_micro"])
    batch = args.batch or (256 if cuda else 128)
    rows = [measure(n, batch, 28, rt, compile_model, args.k, args.repeats, args.warmup) for n in names]
    result = {
        "benchmark": "sam_overhead",
        "figure": "time per training step / base AdamW's, same model and batch, blocks of k steps, interleaved",
        **provenance(rt.device),
        "precision": "bf16 autocast" if cuda else "fp32",
        "compiled": compile_model,
        "results": rows,
    }
    for r in rows:
        for setting, s in r["settings"].items():
            print(f"{r['model']:<16} {setting:<14} {s['step_s_median'] * 1e3:8.1f} ms/step   "
                  f"x{s['ratio_of_medians']:.3f} base (median of pairs x{s['median_of_pair_ratios']:.3f})")
    write_result(result, f"sam_overhead_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
