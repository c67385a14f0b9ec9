"""Figures of robustness results (the dicts the evaluations return): accuracy vs eps, corruption heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sharpvision.figures import plt, save_figure  # plt after the display-free backend is set


def accuracy_vs_eps(result: dict[str, Any], path: str | Path) -> Path:
    """Robust accuracy against the attack's radius; eps 0 is the clean accuracy."""
    eps = sorted(result["accuracy"], key=float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([float(e) for e in eps], [100 * result["accuracy"][e] for e in eps], marker="o")
    steps = f", {result['steps']} steps" if "steps" in result and result["attack"] == "pgd" else ""
    ax.set(title=f"{result['model']}: {result['attack']} ({result['norm']}{steps}), n={result['n']}",
           xlabel="eps (pixel units, images in [0, 1])", ylabel="test accuracy (%)", ylim=(0, 100))
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def milder_than_the_severity_before(result: dict[str, Any]) -> set[tuple[str, Any]]:
    """(corruption, severity) whose accuracy, in whole percent as the heatmap prints it, is above that of the
    severity before it (as asked, in order): where the severity table is not monotone for this model. Some are
    systematic in the reference constants (CIFAR's elastic transform gets milder with every step; docs/robustness.md
    has the measurement); a rise under the printed precision is left unmarked, as sampling noise would be."""
    found = set()
    for name, per in result["accuracy"].items():
        printed = {s: round(100 * a) for s, a in per.items()}
        severities = list(per)
        found |= {(name, s) for before, s in zip(severities, severities[1:]) if printed[s] > printed[before]}
    return found


def corruption_heatmap(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy per corruption (rows) x severity (columns), the clean and mean corruption accuracy in the title; a
    severity more accurate than the one before it (as printed) is marked with a triangle."""
    names = list(result["accuracy"])
    severities = list(next(iter(result["accuracy"].values())))
    grid = [[100 * result["accuracy"][n][s] for s in severities] for n in names]
    milder = milder_than_the_severity_before(result)
    fig, ax = plt.subplots(figsize=(1.2 * len(severities) + 3, 0.38 * len(names) + 1.9))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.0f}" + ("\u25b2" if (names[i], severities[j]) in milder else ""), ha="center",
                    va="center", fontsize=8, color="white" if value < 60 else "black")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set(xlabel="severity", title=f"{result['model']}: clean {100 * result['clean_accuracy']:.1f}%, "
                                     f"mean corrupted {100 * result['mean_corruption_accuracy']:.1f}% "
                                     f"({result['table']} table, n={result['n']})")
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    if milder:
        fig.text(0.01, 0.005, "\u25b2 more accurate than the severity before it", fontsize=7, va="bottom")
    return save_figure(fig, path)


def mnist_c_bars(result: dict[str, Any], path: str | Path) -> Path:
    """Accuracy on each MNIST-C corruption against the clean accuracy (a dashed line)."""
    names = list(result["accuracy"])
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(names) + 1.4))
    ax.barh(range(len(names)), [100 * result["accuracy"][n] for n in names])
    ax.axvline(100 * result["clean_accuracy"], color="black", linestyle="--", linewidth=1, label="clean")
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="test accuracy (%)",
           title=f"{result['model']}: MNIST-C mean {100 * result['mean_corruption_accuracy']:.1f}%, n={result['n']}")
    ax.legend(loc="lower right")
    return save_figure(fig, path)
