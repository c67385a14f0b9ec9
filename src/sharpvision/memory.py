"""Peak memory of a piece of work: what SAM costs in memory over its base optimizer (one copy of the weights).

On CUDA the caching allocator's peak (``max_memory_allocated``); on CPU, where torch keeps no peak, the tensor
allocation timeline of ``torch.profiler`` (``profile_memory=True``): every allocation and free of the work in time
order, summed, and its maximum taken. Both count tensor bytes only (no allocator caching, no Python objects), so
the difference between two steps is exactly the difference in live tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_bytes(work: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Largest number of tensor bytes ``work()`` holds at once beyond what was live when it started."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak
