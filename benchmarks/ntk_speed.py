"""NTK speed (goal: under 60 s at n = 256): seconds for the empirical NTK's condition number of a micro model at
initialisation, n = 256 inputs in float64 (the Table 1 figure), on one thread and on all of them.

Each repeat times the one-thread and the all-threads runs side by side in one process (alternating their order);
the figures are medians. The kernel is built from per-sample gradients (torch.func vmap over grad) in chunks of
``--chunk`` samples; the threads ratio says whether the chunks keep every core busy.

    python benchmarks/ntk_speed.py                       # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import provenance, write_result

from sharpvision import models
from sharpvision.analysis.ntk import ntk_condition_number


def timed(model: torch.nn.Module, x: torch.Tensor, threads: int, chunk: int, reduction: str) -> tuple[float, float]:
    """Seconds and kappa of one condition number on ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        kappa = ntk_condition_number(model, x, reduction=reduction, chunk=chunk)["kappa"]
        return time.perf_counter() - start, kappa
    finally:
        torch.set_num_threads(before)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vit_micro", "mixer_micro", "resnet_micro"])
    p.add_argument("--images", "--n", dest="n", type=int, default=256, help="inputs in the kernel")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    threads = torch.get_num_threads()
    rows = {}
    for name in args.models:
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, in_chans=1, img_size=28)
        x = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        times: dict[int, list[float]] = {1: [], threads: []}
        for r in range(args.repeats):
            for t in ((1, threads) if r % 2 == 0 else (threads, 1)):
                seconds, kappa = timed(model, x, t, args.chunk, "sum")
                times[t].append(seconds)
        full_s, _ = timed(model, x[:32], threads, args.chunk, "full")
        rows[name] = {"params": sum(p.numel() for p in model.parameters()), "kappa": kappa,
                      "seconds_one_thread": statistics.median(times[1]),
                      "seconds_all_threads": statistics.median(times[threads]),
                      "threads_speedup": statistics.median(times[1]) / statistics.median(times[threads]),
                      "full_n32_seconds": full_s, "all_times": {str(k): v for k, v in times.items()}}
        print(name, rows[name]["seconds_all_threads"], flush=True)
    write_result({"benchmark": "ntk_speed", **provenance("cpu"), "n": args.n, "chunk": args.chunk,
                  "dtype": "float64", "reduction": "sum", "threads": threads, "repeats": args.repeats,
                  "models": rows}, "ntk_speed_cpu")


if __name__ == "__main__":
    main()
