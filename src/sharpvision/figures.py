"""Writing figures: matplotlib without a display, and one way to save them (tight, 120 dpi, folders made), shared
by the analysis, evaluation and report plots.

A PNG is a function of its data: no software version or date is written into it, so drawing the same JSON twice
gives the same bytes (the committed results keep only the JSON, and ``sharpvision report`` redraws the figures)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

DPI = 120
METADATA = {"Software": None}  # matplotlib writes its version here by default: dropped, so bytes depend on data only


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = DPI, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata=METADATA)
    plt.close(fig)
    return path
