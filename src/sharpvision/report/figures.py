"""The report's figures (matplotlib, files only). They draw numbers the report has already computed; nothing here
averages or selects."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sharpvision.analysis import plots  # noqa: E402

Curve = list[tuple[int, float]]  # (epoch, value)
STYLES = (("test_accuracy", "-", "test"), ("train_accuracy", "--", "train"))


def learning_curves(series: dict[str, dict[str, Curve]], path: Path, title: str) -> Path:
    """Accuracy (%) per epoch, one colour per series: test solid, train dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, curves) in enumerate(series.items()):
        for metric, style, word in STYLES:
            if curves.get(metric):
                epochs, values = zip(*curves[metric])
                ax.plot(epochs, [100 * v for v in values], style, color=f"C{i % 10}", marker=".",
                        label=f"{label} ({word})")
    ax.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_block(by_setting: dict[str, dict[str, float]], path: Path, title: str, ylabel: str, log: bool) -> Path:
    """Grouped bars, one colour per setting (analysis.plots.per_block, which draws the analysis pieces' own)."""
    return plots.per_block({setting: {"per_block": blocks} for setting, blocks in by_setting.items()}, "per_block",
                           path, title, ylabel, log=log)
