"""Run a suite's cells into one directory, resumably, from one or many processes.

    DIR/suite.yaml                 the suite as first run (a changed suite is refused, with the fields named,
                                   unless only its where rules grew without touching a cell already started)
    DIR/cells/<cell>/run/          the cell's run directory (checkpoints, metrics.jsonl, summary.json)
    DIR/cells/<cell>/analysis/     its analysis pieces (JSON, PNG)
    DIR/cells/<cell>/result.json   written last: the cell is done
    DIR/cells/<cell>/error.json    the last failure (a failed cell is retried once per invocation)
    DIR/results.json               every finished cell, and mean +- std over seeds (see aggregate)

A finished cell is skipped; an interrupted one resumes from its checkpoint; a cell another process is running
(see locks) is left to it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sharpvision import config as svconfig
from sharpvision.experiments.aggregate import aggregate, write_results
from sharpvision.experiments.locks import CellLock
from sharpvision.experiments.suite import Cell, Suite, SuiteError
from sharpvision.train import read_summary, train


def run_suite(suite: Suite, out: Path, cells: list[Cell], retries: int = 1,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``cells`` of ``suite`` into ``out``; returns (and writes) the aggregate of every finished cell."""
    claim(suite, out)
    t0, done = time.perf_counter(), 0
    for i, cell in enumerate(cells, 1):
        status = run_cell(suite, cell, out / "cells" / cell.folder, retries)
        done += status == "trained"
        per_cell = (time.perf_counter() - t0) / max(done, 1)
        # finished cells, and those another process is training, cost this one nothing
        left = sum(cell_status(out / "cells" / c.folder) not in ("done", "running") for c in cells[i:])
        eta = f", about {per_cell * left / 60:.0f} min left" if done else ""
        say(f"[{i}/{len(cells)}] {cell.key}: {status}{eta}")
    results = aggregate(suite, out)
    write_results(out, results)
    return results


def closing_line(suite: Suite, out: Path, cells: list[Cell]) -> str:
    """What ``out`` holds now for the ``cells`` this process was asked to run, and for the whole suite, counted
    from the directory at the end: other processes sharing it may have finished cells, or still be training some."""
    states = [cell_status(out / "cells" / c.folder) for c in cells]
    rest = "".join(f", {states.count(s)} {word}" for s, word in STATES.items() if s != "done" and s in states)
    everything = suite.cells()
    if len(cells) == len(everything):
        counted = f"{states.count('done')} of the suite's {len(cells)} cells done{rest}"
    else:
        whole = sum(cell_status(out / "cells" / c.folder) == "done" for c in everything)
        counted = (f"{states.count('done')} of the {len(cells)} selected cells done{rest} ({whole} of the suite's "
                   f"{len(everything)} done)")
    return f"{counted}; results in {out / 'results.json'}"


def claim(suite: Suite, out: Path) -> None:
    """Write the suite into ``out``, or check that ``out`` holds this same suite. A suite whose ``where`` rules
    alone changed is accepted (and saved) when no cell already started changes its recipe: a ladder gains a rung's
    choices once they are made, and its finished rungs stay as they ran."""
    saved_file = out / "suite.yaml"
    if saved_file.exists():
        saved = yaml.safe_load(saved_file.read_text())
        diff = svconfig.diff(saved, suite.source)
        if not diff:
            return
        if all(d.startswith("where ") for d in diff):
            before = suite.with_where(saved.get("where") or [])
            moved = [c.key for c, b in zip(suite.cells(), before.cells())
                     if c.overrides != b.overrides and (out / "cells" / c.folder).exists()]
            if moved:
                raise SuiteError(f"suite directory {out}: the changed where rules would change cell {moved[0]}, "
                                 f"already started (and {len(moved) - 1} more); leave its rule as it ran")
        else:
            raise SuiteError(f"suite directory {out} holds a different suite ({', '.join(diff)}); use the same "
                             "suite to resume it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".suite.yaml.{time.time_ns()}"
    tmp.write_text(yaml.safe_dump(suite.source, sort_keys=False))
    tmp.replace(saved_file)


STATES = {"done": "done", "running": "running in another process", "failed": "failed (see its error.json)",
          "started": "started and stopped", "todo": "not started"}


def cell_status(folder: Path) -> str:
    """done, running (another live process holds its lock), failed (error.json, no result), started (a run
    directory) or todo."""
    if (folder / "result.json").exists():
        return "done"
    if CellLock(folder / ".lock").held():
        return "running"
    if (folder / "error.json").exists():
        return "failed"
    return "started" if (folder / "run").exists() else "todo"


def run_cell(suite: Suite, cell: Cell, folder: Path, retries: int = 1) -> str:
    """Train (or resume) one cell and analyse it; 'done' (already), 'trained', 'busy' (locked) or 'failed'."""
    if (folder / "result.json").exists():
        return "done"
    folder.mkdir(parents=True, exist_ok=True)
    lock = CellLock(folder / ".lock")
    if not lock.acquire():
        return "busy"
    try:
        for attempt in range(1 + retries):
            try:
                _train_and_analyse(suite, cell, folder)
            except Exception as e:  # noqa: BLE001 - any failure is recorded; the other cells go on
                record = {"cell": cell.key, "attempt": attempt + 1, "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
                (folder / "error.json").write_text(json.dumps(record, indent=2) + "\n")
                continue
            (folder / "error.json").unlink(missing_ok=True)
            return "trained"
        return "failed"
    finally:
        lock.release()


def _train_and_analyse(suite: Suite, cell: Cell, folder: Path) -> None:
    cfg = suite.recipe_of(cell)
    summary = train(cfg, folder / "run", resume=True, progress=False)
    analysis, pieces_wanted = {}, suite.analysis_of(cell)
    if pieces_wanted:
        from sharpvision.analysis.run import analyze, headline, load_subject
        pieces = analyze(load_subject(folder / "run"), list(pieces_wanted), folder / "analysis", reuse=True,
                         progress=lambda _: None, **suite.analysis_settings)
        analysis = headline(pieces)
    result = {"cell": cell.key, "labels": dict(cell.labels), "overrides": list(cell.overrides),
              "summary": summary or read_summary(folder / "run"), "analysis": analysis,
              "curve": _curve(folder / "run" / "metrics.jsonl")}
    tmp = folder / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(folder / "result.json")


def _curve(metrics: Path) -> list[dict[str, float]]:
    """Per-epoch train / val / test figures: the learning curves of the report."""
    keep = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
            "lambda_max", "lambda_max_matched", "matched_epoch", "wall_time_s")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [{k: r[k] for k in keep if k in r} for r in records if "train_loss" in r]
