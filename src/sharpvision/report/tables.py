"""A suite's grid tables: a short one per grid with the measures a reader compares side by side (test accuracy,
SAM's gain paired by seed, lambda_max, robustness) to one decimal, and the full one (every measure, mean ± std (n))
folded below it. Numbers are computed here from the aggregate; results.json has every one unrounded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sharpvision import paper, stats
from sharpvision.experiments.aggregate import attack_metric
from sharpvision.report.doc import Details, Table, mean_std, short, signed

COLUMNS: tuple[tuple[str, str, float], ...] = (  # metric, header, scale (accuracies in %)
    ("test_accuracy", "test acc. %", 100), ("train_accuracy", "train acc. %", 100),
    ("best_val_accuracy", "best val acc. %", 100), ("lambda_max", "lambda_max", 1),
    ("hessian_lambda_max", "lambda_max (analysis)", 1), ("trace", "trace", 1),
    ("ntk_kappa_at_init", "NTK kappa at init", 1), ("loss", "loss", 1), ("loss_under_noise", "loss under noise", 1),
    ("active_fraction_first_block", "active fraction, first block", 1),
    ("corruption_clean_accuracy", "clean acc. % (-C images)", 100),
    ("mean_corruption_accuracy", "mean corrupted acc. %", 100), ("mnist_c_mean_accuracy", "MNIST-C acc. %", 100))
BASELINE = {"sam": "vanilla", "sam_aug": "aug"}  # the setting SAM's gain is measured against, paired by seed
SHORT_NOTE = ("Mean ± sample standard deviation over the n seeds, one decimal; accuracies and SAM's gain (SAM minus "
              "the same setting without it, paired by seed) in points.")


def grid(groups: list[dict[str, Any]], cells: dict[str, dict[str, Any]], axes: list[str]) -> list[Table | Details]:
    """The short table of one grid, then its full table folded: ``groups`` and ``cells`` are the grid's aggregate,
    ``axes`` its axes but the seed."""
    return [compact(groups, cells, axes),
            Details("Every measure of this grid (mean ± std (n), and the paper's ImageNet numbers)",
                    (full(groups, axes),))]


def compact(groups: list[dict[str, Any]], cells: dict[str, dict[str, Any]], axes: list[str]) -> Table:
    gains = [gain(g["labels"], cells) for g in groups]
    attacks = sorted((parsed, m) for m in {m for g in groups for m in g["metrics"]} if (parsed := attack_metric(m)))
    sharpness = next((c for c in (("lambda_max", "lambda_max", 1), ("hessian_lambda_max", "lambda_max (analysis)", 1))
                      if has(groups, c[0])), None)  # the one instrument every cell was measured with, if any
    columns = [c for c in (("test_accuracy", "test acc. %", 100), sharpness,
                           ("mean_corruption_accuracy", "corrupted acc. %", 100)) if c and has(groups, c[0])]
    if attacks:  # robustness to the weakest attack measured: the one every model has a chance against
        (attack, norm, eps), metric = attacks[0]
        columns.append((metric, f"{attack.upper()} eps {eps:g} acc. %", 100))
    with_gain = any(x is not None for x in gains)
    header = (*axes, "n", *(h for _, h, _ in columns[:1]), *(["SAM gain, points"] if with_gain else []),
              *(h for _, h, _ in columns[1:]))
    rows = []
    for g, gained in zip(groups, gains):
        values = [short(g["metrics"][m], s) if m in g["metrics"] else "" for m, _, s in columns]
        rows.append((*(g["labels"].get(a, "") for a in axes), str(g["n"]), *values[:1],
                     *([gained or ""] if with_gain else []), *values[1:]))
    return Table(header, tuple(rows), caption=SHORT_NOTE)


def gain(labels: dict[str, str], cells: dict[str, dict[str, Any]]) -> str | None:
    """SAM's test-accuracy gain of a group over its baseline setting, paired by seed, in points: ``+0.7 ± 0.3``;
    None for a group that is not a SAM setting or has no baseline seed."""
    base = BASELINE.get(labels.get("setting", ""))
    if base is None:
        return None
    ours, theirs = _by_seed(labels, cells), _by_seed({**labels, "setting": base}, cells)
    diffs = stats.mean_std([100 * (ours[s] - theirs[s]) for s in ours if s in theirs])
    if diffs["mean"] is None:
        return None
    spread = f" ± {diffs['std']:.1f}" if diffs["std"] is not None else ""
    return f"{signed(diffs['mean'])}{spread}"


def _by_seed(labels: dict[str, str], cells: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {c["labels"].get("seed", "0"): c["metrics"]["test_accuracy"] for c in cells.values()
            if {a: v for a, v in c["labels"].items() if a != "seed"} == labels
            and c["metrics"].get("test_accuracy") is not None}


def full(groups: list[dict[str, Any]], axes: list[str]) -> Table:
    """One row per group of a grid (its cells but the seed alike), every measure, mean ± std (n)."""
    columns = [c for c in columns_of(groups) if has(groups, c[0])]
    papers = [_paper(g["labels"]) for g in groups]
    header = (*axes, *(h for _, h, _ in columns), *(["paper (ImageNet)"] if any(papers) else []))
    rows = tuple((*(g["labels"].get(a, "") for a in axes),
                  *(mean_std(g["metrics"][m], s) if m in g["metrics"] else "" for m, _, s in columns),
                  *([paper] if any(papers) else [])) for g, paper in zip(groups, papers))
    return Table(header, rows, wide=True,
                 caption="paper (ImageNet): Chen et al. 2022, Tables 1-2, for the model family at the same setting "
                         "(ImageNet at 224 px: a scale reference, not a target).")


def columns_of(groups: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """The fixed columns, then one per attack, norm and eps the cells were evaluated at."""
    attacks = sorted({m: attack_metric(m) for g in groups for m in g["metrics"] if attack_metric(m)}.items(),
                     key=lambda item: item[1])
    return [*COLUMNS, *((m, f"{attack.upper()} {norm} eps {eps:g} acc. %", 100) for m, (attack, norm, eps) in attacks)]


def has(groups: Iterable[dict[str, Any]], metric: str) -> bool:
    return any(metric in g["metrics"] for g in groups)


def _paper(labels: dict[str, str]) -> str:
    """The paper's numbers (sharpvision.paper) for a row of its family, setting (vanilla or SAM), full data and
    clean labels."""
    clean = float(labels.get("data.fraction", 1)) == 1 and float(labels.get("data.label_noise", 0)) == 0
    return paper.reference_row(labels.get("model", ""), labels.get("setting", "")) if clean else ""
