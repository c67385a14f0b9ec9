"""What every benchmark records next to its figures: device, versions, command; and where it writes them."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import timm
import torch

RESULTS = Path(__file__).parent / "results"


def provenance(device: torch.device | str) -> dict[str, Any]:
    """Device name, library versions and the exact command line of this process."""
    device = torch.device(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    versions = {"torch": str(torch.__version__), "timm": timm.__version__, "python": platform.python_version()}
    return {"device": name, "versions": versions, "command": " ".join(["python", *sys.argv])}


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


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample std over seeds (std 0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def paired_t_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test's p of ``a`` against ``b``; None where t is undefined: one pair, or differences with
    no spread but rounding (both arms at 100% train accuracy, or one more right image on each seed), which scipy
    answers with NaN (invalid in JSON) or a p that rounding alone decides."""
    from scipy import stats
    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2 or max(diffs) - min(diffs) <= 1e-12 * max(1.0, *map(abs, a), *map(abs, b)):
        return None
    return float(stats.ttest_rel(a, b).pvalue)


def paired(vanilla: list[float], sam: list[float]) -> dict[str, Any]:
    """SAM against AdamW by seed: both means, the paired difference and the two-sided paired t-test's p."""
    diffs = [b - a for a, b in zip(vanilla, sam)]
    return {"vanilla": mean_std(vanilla), "sam": mean_std(sam), "sam_minus_vanilla": mean_std(diffs),
            "sam_better_seeds": sum(d > 0 for d in diffs), "n": len(diffs), "paired_t_p": paired_t_p(sam, vanilla)}
