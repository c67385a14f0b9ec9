"""Where a SAM step's time goes on this CPU, and what the usual levers buy.

For each micro model: the trainer's own SAM step (``make_step``: SAM rho 0.05 around AdamW, clipping 1.0, batch
128, 28 px) profiled with torch.profiler (the top operators by self CPU time, and the share of the step spent in
the optimizer, SAM's perturbation and clipping rather than in the model), then the same step timed under each
lever, side by side in one process, the order rotated every round, medians of ``--rounds`` rounds of
``--steps`` steps:

- ``eager``: the trainer's CPU default (fp32, eager);
- ``compile``: ``torch.compile`` of the model (inductor's C++ backend; compilation is warm-up, not timed);
- ``bf16``: autocast to bfloat16 (numerically close only, not the default's bits);
- ``channels_last``: NHWC model and inputs (the CNNs only).

    python benchmarks/step_levers.py           # about 5 minutes on 2 CPU cores (two compilations)
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
from common import interleaved, provenance, write_result
from torch import nn
from torch.profiler import ProfilerActivity, profile

from sharpvision import models
from sharpvision.config import OptimConfig
from sharpvision.optim import build_optimizer
from sharpvision.train.step import make_step

MODELS = ("vit_micro", "resnet_micro")
CNNS = ("resnet_micro", "convnext_micro")


def build(name: str, lever: str) -> tuple[Callable[[], object], int]:
    """One SAM step of ``name`` under ``lever`` on a fixed batch, warmed up (compiled, optimizer state made)."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=28, in_chans=1)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    if lever == "channels_last":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if lever == "compile" else model
    autocast = partial(torch.autocast, "cpu", dtype=torch.bfloat16) if lever == "bf16" else nullcontext
    step = make_step(forward, build_optimizer(model, OptimConfig(sam=True, rho=0.05)), nn.CrossEntropyLoss(), 1.0,
                     autocast)
    for _ in range(2):
        step(x, y)
    return partial(step, x, y), len(x)


def _repeat(fn: Callable[[], object], n: int) -> None:
    for _ in range(n):
        fn()


def top_ops(step: Callable[[], object], steps: int, k: int) -> dict[str, object]:
    """torch.profiler over ``steps`` steps: the ``k`` top operators by self CPU time, each with its share."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    foreach = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::_foreach"))
    return {"total_ms_per_step": total / 1e3 / steps, "foreach_share": foreach / total,
            "top": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                    for e in events[:k]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    rows = {}
    for name in args.models:
        levers = ["eager", "compile", "bf16", *(["channels_last"] if name in CNNS else [])]
        steps = {lever: build(name, lever) for lever in levers}
        profiled = top_ops(steps["eager"][0], args.steps, args.top)
        runs = {lever: partial(_repeat, fn, args.steps) for lever, (fn, _) in steps.items()}  # warmed up by build
        times = {lever: [args.steps * steps[lever][1] / t for t in ts]
                 for lever, ts in interleaved(runs, args.rounds, warmup=0).items()}
        eager = statistics.median(times["eager"])
        rows[name] = {"profile": profiled,
                      "images_per_s": {lever: statistics.median(v) for lever, v in times.items()},
                      "speedup_vs_eager": {lever: statistics.median(v) / eager for lever, v in times.items()},
                      "all_images_per_s": times}
        print(name, {k: f"{v:.2f}x" for k, v in rows[name]["speedup_vs_eager"].items()}, flush=True)
    write_result({"benchmark": "step_levers", **provenance("cpu"), "batch": 128, "steps": args.steps,
                  "rounds": args.rounds, "sam": "rho 0.05 around AdamW, clip 1.0", "models": rows}, "step_levers_cpu")


if __name__ == "__main__":
    main()
