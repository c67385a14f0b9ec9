"""The scale ladder in the report: its table (per rung and family) and its figure (SAM's gain against the
training-set size per family, and the ViT / ResNet sharpness ratio against it), from
:func:`sharpvision.experiments.ladder.rung_table`; nothing here computes a statistic."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sharpvision import stats
from sharpvision.experiments.aggregate import attack_metric
from sharpvision.experiments.ladder import AXIS, MICRO, WIDE, rung_table
from sharpvision.figures import plt, save_figure
from sharpvision.report.doc import Block, Figure, Heading, Table, Text

NAME = "ladder.png"
COLOURS = {"vit": "C0", "mixer": "C1", "resnet": "C2"}  # one colour per family in every panel
PAIRS = (" / ".join(MICRO), " / ".join(WIDE))  # the pair rows' model names (rung_table)


def blocks(results: dict[str, Any], figures: Path) -> list[Block]:
    """The ladder's section of a suite report, or nothing when no rung has both settings of a family yet."""
    rows = rung_table(results)
    families = [r for r in rows if "gain" in r]
    if not families:
        return []
    draw(rows, figures / NAME)
    table = Table(("images", "model", "AdamW", "SAM", "SAM gain [95% CI]", "n", "lambda_max AdamW, matched / end"),
                  tuple((r[AXIS], r["model"], stats.fmt_mean_std(r["adamw"]), stats.fmt_mean_std(r["sam"]),
                         stats.fmt_effect(r["gain"]), str(r["gain"]["n"]), _lambdas(r)) for r in families),
                  id="ladder", caption="Test accuracy in points at the last epoch (mean +- std over seeds); SAM's "
                  "gain paired by seed.")
    contrasts = [r for r in rows if "contrast" in r]
    contrast_table = Table(("images", "pair", "ViT-SAM - ResNet-AdamW [95% CI]", "ViT gain - ResNet gain [95% CI]",
                            "n"),
                           tuple((rung, pair, *(stats.fmt_effect(by[c]["points"]) if c in by else "n/a"
                                                for c in ("gap", "gain_difference")),
                                  str(next(iter(by.values()))["points"]["n"]))
                                 for (rung, pair), by in _by_pair(contrasts).items()),
                           caption="Points, paired by seed (the seed draws both networks' data). Positive gap: "
                           "the ViT with SAM beats the ResNet with AdamW.")
    ratios = [r for r in rows if "log_ratio" in r]
    ratio_table = Table(("images", "pair", "lambda_max at", "log(ViT / ResNet) [95% CI]", "n"),
                        tuple((r[AXIS], r["model"], _at(r["metric"]),
                               stats.fmt_effect(r["log_ratio"], 2), str(r["log_ratio"]["n"])) for r in ratios),
                        caption="Positive: the ViT is the sharper network (AdamW).")
    robust = [(r, m) for r in families for m in r.get("robustness", [])]
    robust_table = Table(("images", "model", "measure", "AdamW", "SAM", "SAM gain [95% CI]", "n"),
                         tuple((r[AXIS], r["model"], _measure(m["measure"]), stats.fmt_mean_std(m["adamw"]),
                                stats.fmt_mean_std(m["sam"]), stats.fmt_effect(m["gain"]), str(m["gain"]["n"]))
                               for r, m in robust),
                         id="ladder-robustness",
                         caption="Accuracy in points under corruption and attack (sharpvision eval on each cell's "
                         "last checkpoint; mean +- std over seeds), SAM's gain paired by seed.")
    return [Heading("The scale ladder", id="ladder"),
            Text("Which way the paper's effects move as the training set and the model grow; the tests and their "
                 "rule are in the claims above and in docs/ladder.md."),
            Figure(NAME, "Left: SAM's gain per family against the training-set size (mean and 95% interval over "
                   "seeds). Right: log(lambda_max ViT / ResNet) with AdamW, at matched training loss and at the end "
                   "(above zero: the ViT is sharper). Once the model rung has results, a second row shows the same "
                   "at micro and twice the width, at that rung's data size."),
            table, *([contrast_table] if contrasts else []), *([ratio_table] if ratios else []),
            *([robust_table] if robust else [])]


def _measure(name: str) -> str:
    """A robustness metric's name as a reader says it."""
    if attack := attack_metric(name):
        _, norm, eps = attack
        return f"PGD {'L-inf' if norm == 'linf' else 'L2'}, eps {eps:g}"
    return {"mean_corruption_accuracy": "corruptions (mean)", "mnist_c_mean_accuracy": "MNIST-C (mean)"}[name]


def _by_pair(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r[AXIS], r["model"]), {})[r["contrast"]] = r
    return out


def _lambdas(row: dict[str, Any]) -> str:
    parts = [row.get(f"adamw_{m}") for m in ("lambda_max_matched", "lambda_max")]
    return " / ".join(f"{p['mean']:.3g}" if p and p.get("mean") is not None else "n/a" for p in parts)


def draw(rows: list[dict[str, Any]], path: Path) -> Path:
    """Against data, the micro families and pair; against model size (a second row, once the model rung has
    results), each family at micro and 2x width at the model rung's data size, so no wide point hides behind a
    micro one at the same number of images."""
    wide = [r for r in rows if r.get("model") in (*WIDE, PAIRS[1])]
    micro = [r for r in rows if r not in wide]
    fig, axes = plt.subplots(2 if wide else 1, 2, figsize=(10, 7.2 if wide else 3.6), squeeze=False)
    (left, right) = axes[0]
    for model in dict.fromkeys(r["model"] for r in micro if "gain" in r):
        _line(left, [(r[AXIS], r["gain"]) for r in micro if r["model"] == model and "gain" in r], model,
              COLOURS[model])
    left.set(ylabel="SAM gain (points)", title="SAM's gain against data")
    for i, (pair, metric) in enumerate(dict.fromkeys((r["model"], r["metric"]) for r in micro if "log_ratio" in r)):
        _line(right, [(r[AXIS], r["log_ratio"]) for r in micro if r["model"] == pair and r.get("metric") == metric],
              f"{pair}, {_at(metric)}", f"C{i}", dashed=not metric.endswith("matched"))
    right.set(ylabel="log(lambda_max ViT / ResNet)", title="Sharpness ratio against data")
    for ax in (left, right):
        xs = sorted({x for line in ax.lines for x in line.get_xdata()})
        ax.set_xscale("log", base=2)
        if len(xs) == 1:  # one rung so far: a margin around it (not a family's one point among several rungs)
            ax.set_xlim(xs[0] / math.sqrt(2), xs[0] * math.sqrt(2))
        ax.set_xticks(xs, [f"{x:,.0f}" for x in xs], minor=False)  # the rungs themselves, not powers of two
        ax.minorticks_off()
        ax.set_xlabel("training images")
    if wide:
        _by_width(axes[1], rows, wide[0][AXIS])
    for ax in axes.flat:
        ax.axhline(0, color="#1d2330", lw=0.8)
        ax.grid(alpha=0.3)
        if ax.containers:  # an errorbar drawn
            ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def _by_width(axes: Any, rows: list[dict[str, Any]], rung: str) -> None:
    """SAM's gain per family and the sharpness ratio at micro (x = 1) and 2x width (x = 2), at the model rung."""
    left, right = axes
    at = [r for r in rows if r[AXIS] == rung]
    for micro, wide in zip(MICRO, WIDE, strict=True):
        _line(left, [(w, r["gain"]) for w, name in ((1, micro), (2, wide)) for r in at
                     if r.get("model") == name and "gain" in r], micro, COLOURS[micro])
    left.set(ylabel="SAM gain (points)", title=f"SAM's gain against width ({float(rung):,.0f} images)")
    for i, metric in enumerate(("lambda_max_matched", "lambda_max")):
        _line(right, [(w, r["log_ratio"]) for w, name in zip((1, 2), PAIRS, strict=True) for r in at
                      if r.get("model") == name and r.get("metric") == metric],
              f"vit / resnet, {_at(metric)}", f"C{i}", dashed=metric == "lambda_max")
    right.set(ylabel="log(lambda_max ViT / ResNet)", title=f"Sharpness ratio against width ({float(rung):,.0f} images)")
    for ax in axes:
        ax.set(xlim=(0.7, 2.3), xticks=[1, 2], xticklabels=["micro", "2x width"], xlabel="model")


def _at(metric: str) -> str:
    return "matched loss" if metric.endswith("matched") else "end"


def _line(ax: Any, points: list[tuple[str | float, dict[str, Any]]], label: str, colour: str,
          dashed: bool = False) -> None:
    points = [(float(x), r) for x, r in points if r.get("effect") is not None]
    if not points:
        return
    xs, ys = [x for x, _ in points], [r["effect"] for _, r in points]
    lo = [r["effect"] - r["ci"][0] if r.get("ci") else 0.0 for _, r in points]
    hi = [r["ci"][1] - r["effect"] if r.get("ci") else 0.0 for _, r in points]
    ax.errorbar(xs, ys, yerr=[lo, hi], label=label, color=colour, marker="o", ms=4, capsize=3,
                ls="--" if dashed else "-")
