"""What every benchmark records next to its figures: device, versions, command; and where it writes them."""

from __future__ import annotations

import json
import platform
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
