"""The report of plain run directories (``sharpvision train`` outputs), as blocks: their headline figures side by
side and their learning curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharpvision.report import figures as draw
from sharpvision.report.doc import Block, Code, Figure, Heading, Table, Text, glossary, number, percent
from sharpvision.train import read_summary

COLUMNS: tuple[tuple[str, str, float | None], ...] = (  # summary key, header, scale (None: shown as written)
    ("model", "model", None), ("optimizer", "optimizer", None), ("epochs", "epochs", None),
    ("test_accuracy", "test acc. %", 100), ("train_accuracy", "train acc. %", 100),
    ("val_accuracy", "val acc. %", 100), ("best_val_accuracy", "best val acc. %", 100),
    ("test_loss", "test loss", 1), ("train_loss", "train loss", 1), ("images_per_s", "images/s", 1),
    ("wall_time_s", "wall time (s)", 1), ("device", "device", None), ("torch", "torch", None))


@dataclass(frozen=True)
class Run:
    label: str
    summary: dict[str, Any]  # summary.json, with best_val_accuracy from the curve
    curve: list[dict[str, Any]]  # the per-epoch records of metrics.jsonl (or curve.json)


def load(dirs: list[Path]) -> list[Run]:
    """Each directory's summary and curve, labelled by its name (with its parent's where names repeat)."""
    names = [d.resolve().name for d in dirs]
    runs = []
    for d, name in zip(dirs, names):
        label = f"{d.resolve().parent.name}/{name}" if names.count(name) > 1 else name
        curve = [r for r in _records(d) if "train_loss" in r and "epoch" in r]
        summary = dict(read_summary(d))
        val = [r["val_accuracy"] for r in curve if "val_accuracy" in r]
        if val:
            summary["best_val_accuracy"] = max(val)
        runs.append(Run(label, summary, curve))
    return runs


def _records(run: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records: its metrics.jsonl, or where that is not kept (a committed result folder keeps
    only small files) its curve.json, the same epoch records as a suite cell's result.json ``curve``."""
    if (run / "metrics.jsonl").is_file():
        return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return json.loads((run / "curve.json").read_text()) if (run / "curve.json").is_file() else []


def blocks(runs: list[Run], figures: Path, shown: list[str]) -> list[Block]:
    """The whole report; ``shown`` are the directories as the user named them (for the command)."""
    columns = [c for c in COLUMNS if any(c[0] in r.summary for r in runs)]
    rows = tuple((r.label, *(_cell(r.summary.get(key), scale) for key, _, scale in columns)) for r in runs)
    out: list[Block] = [Heading(f"Runs: {', '.join(r.label for r in runs)}", 1),
                        Text(f"{len(runs)} run directories. Made by:"),
                        Code((f"sharpvision report {' '.join(shown)}",)),
                        Heading("Headline figures", id="runs"),
                        Table(("run", *(h for _, h, _ in columns)), rows, id="runs-table",
                              caption="From each run's summary.json (after the last epoch); accuracies in %.")]
    series = {r.label: {m: [(x["epoch"] + 1, x[m]) for x in r.curve if m in x] for m, _, _ in draw.STYLES}
              for r in runs if r.curve}
    if series:
        path = draw.learning_curves(series, figures / "curves.png", "accuracy per epoch")
        out += [Heading("Learning curves", id="curves"),
                Figure(path.name, "test accuracy (solid) and train accuracy (dashed) per epoch, one colour per run")]
    return out + glossary([key for key, _, scale in columns if scale is not None])


def _cell(value: Any, scale: float | None) -> str:
    if value is None:
        return ""
    if scale is None or not isinstance(value, (int, float)):
        return str(value)
    return percent(value) if scale == 100 else number(value)
