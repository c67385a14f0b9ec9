"""sharpvision: train vision models from scratch with SAM and measure their loss geometry.

``import sharpvision as sv`` is cheap: each subpackage (``sv.models``, ``sv.optim``, ``sv.data``, ``sv.train``,
``sv.evaluate``, ``sv.analysis``, ...) is imported on first use, so ``sharpvision models`` does not load the
analysis stack.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_SUBPACKAGES = ("analysis", "checkpoint", "config", "data", "errors", "evaluate", "flops", "models", "optim",
                "passes", "runs", "runtime", "tasks", "train")
__all__ = [*_SUBPACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"sharpvision.{name}")
    raise AttributeError(f"module 'sharpvision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
