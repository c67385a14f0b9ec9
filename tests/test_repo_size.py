"""The repository holds code and the small results the docs and tests read, not what is drawn from them: no tracked
file under benchmarks/results/ is a figure, a page or a training log, none is over 200 KB, and the figures the docs
show (docs/figures/) stay under 1 MB in all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_LIMIT = 200_000  # bytes, one file under benchmarks/results/
DOCS_FIGURES_LIMIT = 1_000_000  # bytes, docs/figures/ in all
DRAWN = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".html", ".htm")
LOGS = ("metrics.jsonl",)
# tracked files known to be over the limit, each with the reason and the way out; the test fails when one is gone or
# has shrunk, so the list cannot go stale
OVERSIZE: dict[str, str] = {}  # files allowed over the limit, each with why: none


def tracked(under: str) -> list[Path]:
    """The files git tracks under ``under`` (relative to the repository root)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--", under], cwd=ROOT, capture_output=True, check=True).stdout
    return [Path(p) for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def test_no_drawn_file_or_training_log_is_tracked_under_benchmarks_results() -> None:
    files = tracked("benchmarks/results")
    assert files, "benchmarks/results/ holds no tracked file: wrong root?"
    drawn = [str(p) for p in files if p.suffix.lower() in DRAWN or p.name in LOGS]
    assert not drawn, f"drawn from the JSON beside them (sharpvision report redraws them), do not commit: {drawn[:10]}"


def test_no_tracked_file_under_benchmarks_results_is_over_200_kb() -> None:
    sizes = {str(p): (ROOT / p).stat().st_size for p in tracked("benchmarks/results")}
    large = {p: s for p, s in sizes.items() if s > RESULTS_LIMIT and p not in OVERSIZE}
    assert not large, f"over {RESULTS_LIMIT} bytes: {large}"
    stale = [p for p in OVERSIZE if sizes.get(p, 0) <= RESULTS_LIMIT]
    assert not stale, f"no longer over the limit (or gone): take them out of OVERSIZE: {stale}"


def test_the_docs_figures_are_under_1_mb_in_all() -> None:
    files = tracked("docs/figures")
    assert files, "docs/figures/ holds no tracked figure"
    total = sum((ROOT / p).stat().st_size for p in files)
    assert total < DOCS_FIGURES_LIMIT, f"docs/figures/ is {total} bytes"
