"""docs/figures/ holds exactly the pictures scripts/draw_docs_figures.py draws from committed JSON, byte for byte:
drawing is deterministic (no version or date in a PNG), and a picture the docs show never drifts from its numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script():
    spec = importlib.util.spec_from_file_location("draw_docs_figures", ROOT / "scripts" / "draw_docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_figures_are_redrawn_byte_identical_from_the_committed_json(tmp_path: Path) -> None:
    drawn = script().draw_all(tmp_path)  # drawn in an earlier process and committed: the same bytes again
    committed = sorted(p.name for p in (ROOT / "docs" / "figures").glob("*.png"))
    assert sorted(p.name for p in drawn) == committed
    stale = [p.name for p in drawn if (ROOT / "docs" / "figures" / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"docs/figures/ out of date: {stale}; run python scripts/draw_docs_figures.py"
