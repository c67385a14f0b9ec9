"""The report's figures (matplotlib, files only). They draw numbers the report has already computed; nothing here
averages or selects. Every PNG goes through ``sharpvision.figures.save_figure``, which writes no version or date,
so the same JSON draws the same bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from sharpvision.analysis import plots
from sharpvision.figures import plt, save_figure  # plt after the display-free backend is set

Curve = list[tuple[int, float]]  # (epoch, value)
STYLES = (("test_accuracy", "-", "test"), ("train_accuracy", "--", "train"))
VERDICT_COLOURS = {"holds": "#2e8b47", "contradicted": "#c0392b", "inconclusive": "#c99a06",
                   "undecided": "#8a8f98", "not measured": "#8a8f98"}
GREY = "#9aa0a6"  # a smoke suite's verdicts decide nothing
MAX_LINES = 4  # lines in one panel of a small-multiples figure


@dataclass(frozen=True)
class Effect:
    """One comparison "A > B" of a claim: its effect A - B with the 95% interval, in ``unit``."""

    label: str
    effect: float
    ci: tuple[float, float] | None
    unit: str
    verdict: str
    predicted: int = 1  # the sign the claim predicts


@dataclass(frozen=True)
class Band:
    """A line of a panel: per epoch the mean over seeds and its sample standard deviation (0 for one seed)."""

    epochs: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def claims(effects: list[Effect], path: Path, grey: bool) -> Path:
    """A forest plot: each comparison's effect and 95% interval, a line at zero, the side the claim predicts
    shaded, coloured by verdict (all grey for a smoke suite); one panel per unit, so points and log ratios never
    share an axis."""
    units = list(dict.fromkeys(e.unit for e in effects))
    counts = [sum(e.unit == u for e in effects) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(10, 1.2 + 0.32 * sum(counts) + 0.9 * len(units)),
                             gridspec_kw={"height_ratios": [c + 1.5 for c in counts]}, squeeze=False)
    for ax, unit in zip(axes[:, 0], units):
        rows = [e for e in effects if e.unit == unit]
        ys = list(range(len(rows)))[::-1]  # the first comparison at the top
        for y, e in zip(ys, rows):
            colour = GREY if grey else VERDICT_COLOURS.get(e.verdict, GREY)
            if e.ci is not None:
                ax.plot(e.ci, [y, y], color=colour, lw=2.4, solid_capstyle="butt")
            ax.plot([e.effect], [y], "o", color=colour, ms=6, zorder=3)
        ends = [0.0, *(x for e in rows for x in (e.ci or (e.effect, e.effect)))]
        lo, hi = min(ends), max(ends)
        pad = 0.08 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
        ax.axvline(0, color="#1d2330", lw=0.9)
        sign = rows[0].predicted
        ax.axvspan(0, hi if sign > 0 else lo, color="#2e8b47", alpha=0.07, lw=0)
        ax.text(hi if sign > 0 else lo, len(rows) - 0.35,
                "predicted side \u2192" if sign > 0 else "\u2190 predicted side",
                ha="right" if sign > 0 else "left", va="bottom", fontsize=8, color="#2e6b3a")
        ax.set(xlim=(lo, hi), ylim=(-0.7, len(rows) + 0.2), xlabel=f"effect A \u2212 B ({unit}), 95% interval")
        ax.set_yticks(ys, [e.label for e in rows], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    shown = ["smoke test: no verdict"] if grey else [v for v in VERDICT_COLOURS if any(e.verdict == v for e in effects)]
    handles = [Line2D([], [], color=GREY if grey else VERDICT_COLOURS[v], marker="o", lw=2.4) for v in shown]
    fig.legend(handles, shown, loc="upper center", ncol=len(shown), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return save_figure(fig, path, tight=False)


def panels(grid: dict[str, dict[str, Band]], path: Path, ylabel: str, colours: dict[str, int]) -> Path:
    """Small multiples: one panel per title, at most ``MAX_LINES`` lines each (mean with a band of one standard
    deviation over seeds), one shared y axis and one legend, a colour per line label across all panels."""
    if any(len(lines) > MAX_LINES for lines in grid.values()):
        raise ValueError(f"a panel has more than {MAX_LINES} lines: split it first")
    cols = min(4, len(grid))
    rows = math.ceil(len(grid) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows + 0.5), sharey=True, squeeze=False)
    for ax, (title, lines) in zip(axes.flat, grid.items()):
        for label, band in lines.items():
            colour = f"C{colours[label] % 10}"
            ax.plot(band.epochs, band.mean, color=colour, marker="." if len(band.epochs) < 15 else None, lw=1.4)
            ax.fill_between(band.epochs, [m - s for m, s in zip(band.mean, band.std)],
                            [m + s for m, s in zip(band.mean, band.std)], color=colour, alpha=0.2, lw=0)
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(grid):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=9)
    handles = [Line2D([], [], color=f"C{i % 10}", lw=2) for i in colours.values()]
    fig.legend(handles, list(colours), loc="upper center", ncol=min(len(colours), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    return save_figure(fig, path, tight=False)


def learning_curves(series: dict[str, dict[str, Curve]], path: Path, title: str) -> Path:
    """Accuracy (%) per epoch, one colour per series: test solid, train dashed (a few plain runs side by side)."""
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
    return save_figure(fig, path, dpi=110)


def per_block(by_setting: dict[str, dict[str, float]], path: Path, title: str, ylabel: str, log: bool) -> Path:
    """Grouped bars, one colour per setting (analysis.plots.per_block, which draws the analysis pieces' own)."""
    return plots.per_block({setting: {"per_block": blocks} for setting, blocks in by_setting.items()}, "per_block",
                           path, title, ylabel, log=log)


def landscapes(planes: dict[str, dict[str, Any]], path: Path) -> Path:
    """Loss planes side by side on one colour scale, each titled with its run (analysis.plots.landscape_2d)."""
    return plots.landscape_2d(planes, path)


def attention(result: dict[str, Any], path: Path, title: str) -> Path:
    """A run's attention maps from its attention.json: rollout, and the CLS token's attention in the last and the
    first layer, over the test images it was measured on."""
    import torch
    cls_mean = torch.tensor(result["cls_mean"])
    return plots.attention_grid(torch.tensor(result["images"]), {"rollout": torch.tensor(result["rollout"]),
                                                                 "CLS attention, last layer": cls_mean[:, -1],
                                                                 "CLS attention, first layer": cls_mean[:, 0]},
                                path, title)
