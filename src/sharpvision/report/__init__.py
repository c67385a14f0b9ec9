"""``sharpvision report``: a suite directory (``sharpvision reproduce``'s) or run directories as ``report.md`` and
one self-contained ``report.html`` (figures embedded, style inline: it reads offline), with the figures in
``figures/`` and, for a suite, the claims' verdicts in ``claims.json``, the tables the suite names in
``DIR/tables/`` (sharpvision.experiments.tables) and ``results.json`` brought up to date with the finished cells
(shards write it only when they end).

Every input is checked before anything is written, so a wrong directory leaves no half report behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from sharpvision.errors import SharpvisionError
from sharpvision.experiments import tables as suite_tables
from sharpvision.experiments.aggregate import write_results
from sharpvision.experiments.claimsets import evaluate_suite
from sharpvision.report import runs as report_runs
from sharpvision.report import suite as report_suite
from sharpvision.report.doc import Block, figure_names
from sharpvision.report.render import to_html, to_markdown


class ReportError(SharpvisionError, ValueError):
    """A directory to report on is missing or holds no finished run; the message names it."""


def write_report(dirs: list[Path], out: Path | None = None, pair: str | None = None) -> list[Path]:
    """Write the report of ``dirs`` into ``out`` (default ``DIR/report`` for a suite, else ``report``); returns the
    files written. ``pair``: the model label whose landscape and attention pictures a suite report shows."""
    kinds = [_kind(d) for d in dirs]
    if "suite" in kinds and len(dirs) > 1:
        raise ReportError(f"{dirs[kinds.index('suite')]} is a suite directory: report it on its own")
    if kinds == ["suite"]:
        return _suite(dirs[0], out or dirs[0] / "report", pair)
    if pair is not None:
        raise ReportError("--pair picks a model of a suite; these are run directories")
    runs = report_runs.load(dirs)
    out = out or Path("report")
    return _write(out, report_runs.blocks(runs, _figures(out), [str(d) for d in dirs]))


def _kind(path: Path) -> str:
    """'suite' or 'run', or a ReportError naming what is missing."""
    if not path.is_dir():
        raise ReportError(f"{path}: no such directory")
    if (path / "suite.yaml").is_file():
        if not any((path / "cells").glob("*/result.json")):
            raise ReportError(f"{path}: a suite directory with no finished cell (no cells/*/result.json)")
        return "suite"
    if (path / "summary.json").is_file():
        return "run"
    raise ReportError(f"{path}: no runs here: neither a suite directory (suite.yaml, cells/*/result.json) nor a "
                      "finished run directory (summary.json)")


def _suite(root: Path, out: Path, pair: str | None) -> list[Path]:
    data = report_suite.load(root)
    if not data.finished:
        raise ReportError(f"{root}: none of the suite's cells has finished (no cells/*/result.json of this suite)")
    models = report_suite.pair_models(data)
    if pair is not None and pair not in models:
        raise ReportError(f"--pair {pair}: no cell of model {pair!r} at setting vanilla or sam has a landscape or "
                          f"attention picture; models that have: {', '.join(models) or 'none'}")
    earlier = out / "claims.json"
    verdicts = evaluate_suite(data.results, data.results.get("claims", "paper"),
                              json.loads(earlier.read_text()) if earlier.is_file() else None)
    blocks = report_suite.blocks(data, verdicts, pair or next(iter(models), None), _figures(out), str(root))
    (out / "claims.json").write_text(json.dumps(verdicts, indent=2, allow_nan=False) + "\n")
    return [*_write(out, blocks), out / "claims.json", write_results(root, data.results), *suite_tables.write(root)]


def _figures(out: Path) -> Path:
    """``out/figures``, emptied of earlier reports' PNGs so the folder holds exactly this report's figures."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):
        old.unlink()
    return figures


def _write(out: Path, blocks: list[Block]) -> list[Path]:
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks, out / "figures"), encoding="utf-8")
    return [out / "report.md", out / "report.html", *(out / "figures" / name for name in figure_names(blocks))]
