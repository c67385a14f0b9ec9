"""Figures from analysis results (plain dicts): titles, axis labels and colorbars, readable at a glance.

Plotting is kept apart from the maths: every function takes the dict an analysis function returned (or
several, to compare runs) and writes a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sharpvision.figures import plt, save_figure  # plt after the display-free backend is set

Runs = dict[str, dict[str, Any]]  # label -> result, to draw several runs side by side


def density(results: Runs, path: str | Path) -> Path:
    """Hessian eigenvalue density (stochastic Lanczos quadrature), log scale, one curve per run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in results.items():
        ax.semilogy(r["grid"], np.maximum(np.asarray(r["density"]), 1e-12), label=label)
    ax.set(title="Hessian eigenvalue density (SLQ)", xlabel="eigenvalue", ylabel="density (log)")
    ax.legend()
    return save_figure(fig, path)


def per_block(results: Runs, key: str, path: str | Path, title: str, ylabel: str, log: bool = False) -> Path:
    """Grouped bars of ``result[key]`` (a {block: value} dict) per block, one colour per run."""
    names = list(next(iter(results.values()))[key])
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) * len(results)), 4))
    for i, (label, r) in enumerate(results.items()):
        ax.bar(np.arange(len(names)) + i * width, [r[key].get(n, np.nan) for n in names], width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2, names, rotation=45, ha="right")
    ax.set(title=title, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()
    return save_figure(fig, path)


def landscape_1d(results: Runs, path: str | Path, title: str = "loss along a direction") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in results.items():
        ax.plot(r["alphas"], r["loss"], marker=".", label=label)
    ax.set(title=title, xlabel="alpha", ylabel="loss")
    ax.legend()
    return save_figure(fig, path)


def landscape_2d(results: Runs, path: str | Path) -> Path:
    """Contours (top) and surfaces (bottom) of the loss over a filter-normalised 2-D plane, per run, one scale."""
    losses = [np.asarray(r["loss"]) for r in results.values()]
    lo, hi = min(float(x.min()) for x in losses), max(float(x.max()) for x in losses)
    fig = plt.figure(figsize=(5 * len(results), 9))
    for i, (label, r) in enumerate(results.items()):
        a, b = np.meshgrid(r["alphas"], r["betas"], indexing="ij")
        z = np.asarray(r["loss"])
        ax = fig.add_subplot(2, len(results), i + 1)
        cs = ax.contourf(a, b, z, levels=np.linspace(lo, hi, 21), cmap="viridis")
        ax.contour(a, b, z, levels=np.linspace(lo, hi, 21), colors="k", linewidths=0.3)
        ax.plot(0, 0, "r+", markersize=10)
        ax.set(title=f"{label}: loss (center {r['center_loss']:.3f})", xlabel="direction 1", ylabel="direction 2")
        fig.colorbar(cs, ax=ax, label="loss")
        ax3 = fig.add_subplot(2, len(results), len(results) + i + 1, projection="3d")
        ax3.plot_surface(a, b, z, cmap="viridis", vmin=lo, vmax=hi)
        ax3.set(title=f"{label}: surface", xlabel="direction 1", ylabel="direction 2", zlabel="loss", zlim=(lo, hi))
    return save_figure(fig, path)


def attention_grid(images: torch.Tensor, maps: dict[str, torch.Tensor], path: str | Path,
                   title: str = "attention") -> Path:
    """Rows: images; columns: the image, then each named map [B, gh, gw] upsampled and overlaid on it."""
    n = images.shape[0]
    fig, axes = plt.subplots(n, 1 + len(maps), figsize=(2.4 * (1 + len(maps)), 2.4 * n), squeeze=False)
    h, w = images.shape[-2:]
    for i in range(n):
        img = images[i].float()
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        shown = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()
        axes[i, 0].imshow(shown, cmap="gray" if img.shape[0] == 1 else None)
        axes[i, 0].set_title("input" if i == 0 else "")
        for j, (name, m) in enumerate(maps.items(), start=1):
            up = torch.nn.functional.interpolate(m[i][None, None].float(), size=(h, w), mode="bilinear")[0, 0].numpy()
            axes[i, j].imshow(shown, cmap="gray" if img.shape[0] == 1 else None)
            im = axes[i, j].imshow(up, cmap="jet", alpha=0.5)
            axes[i, j].set_title(name if i == 0 else "")
            fig.colorbar(im, ax=axes[i, j], fraction=0.046)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, path)
