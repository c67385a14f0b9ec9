"""What every benchmark shares: the device, versions and command it records next to its figures, where it writes them,
how it times (warm-up, interleaved repeats, medians), and mean +- std and paired tests through sharpvision.stats."""

from __future__ import annotations

import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch

from sharpvision import stats

RESULTS = Path(__file__).parent / "results"


def provenance(device: torch.device | str) -> dict[str, Any]:
    """Device name, library versions and the exact command line of this process."""
    device = torch.device(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    versions = {"torch": str(torch.__version__), "timm": timm.__version__, "python": platform.python_version()}
    return {"device": name, "versions": versions, "command": shlex.join(["python", *sys.argv])}


def local_device() -> str:
    """'cuda' when this machine has a GPU, else 'cpu': where the training benchmarks run, and their files' suffix."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a host clock measures it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_result(result: dict[str, Any], name: str, out: str | None = None) -> Path:
    """Write ``result`` as JSON to ``out`` or benchmarks/results/<name>.json; returns the path."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed rounds (compilation, caches), then ``repeats`` rounds
    that call every function once, the order rotated each round so no function always runs first; the device is
    synchronized around each call. A background job slows every function alike within a round, so compare the
    functions by their medians (:func:`medians`) and ratios (:func:`ratios`), never by one time."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names, times = list(fns), {name: [] for name in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(t) for name, t in times.items()}


def ratios(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    """Each function against ``base``: the ratio of the medians, and the median of the per-round ratios (the two
    agree when the machine's load is steady; a gap says it was not)."""
    return {name: {"ratio_of_medians": statistics.median(t) / statistics.median(times[base]),
                   "median_of_pair_ratios": statistics.median(a / b for a, b in zip(t, times[base]))}
            for name, t in times.items()}


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample std over seeds (sharpvision.stats), in the shape the committed results have: std 0 for one
    value."""
    s = stats.mean_std(values)
    return {"mean": s["mean"], "std": 0.0 if s["std"] is None and s["n"] == 1 else s["std"]}


def paired_t_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test's p of ``a`` against ``b`` (sharpvision.stats); None where t is undefined: one pair, or
    differences with no spread but rounding (both arms at 100% train accuracy, or one more right image on each
    seed), where the committed results say "no spread" rather than a p that rounding alone decides."""
    test = stats.paired(a, b)
    return None if test["ci"] is None or test["ci"][0] == test["ci"][1] else test["p"]


def paired(vanilla: list[float], sam: list[float]) -> dict[str, Any]:
    """SAM against AdamW by seed: both means, the paired difference and the two-sided paired t-test's p."""
    diffs = [b - a for a, b in zip(vanilla, sam)]
    return {"vanilla": mean_std(vanilla), "sam": mean_std(sam), "sam_minus_vanilla": mean_std(diffs),
            "sam_better_seeds": sum(d > 0 for d in diffs), "n": len(diffs), "paired_t_p": paired_t_p(sam, vanilla)}
