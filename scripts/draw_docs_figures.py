"""Draw the figures the README and the docs show into docs/figures/, from committed JSON only.

benchmarks/results/ keeps the numbers and no pictures; the few pictures a reader sees on the first pages are drawn
here, small, by the report's own drawing code, and committed (tests/test_docs_figures.py redraws them and compares
bytes, so a picture never drifts from its JSON).

    python scripts/draw_docs_figures.py            # (re)draw docs/figures/*.png
    python scripts/draw_docs_figures.py --check    # exit 1, naming them, where a committed figure is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sharpvision.report import claims as claims_view
from sharpvision.report import figures as draw

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "figures"


def geometry_demo_landscape(path: Path) -> Path:
    """The demo ViT's loss plane with AdamW and with SAM, one colour scale (benchmarks/results/geometry_demo_cpu)."""
    runs = {"AdamW (vit_base)": "vit_base", "SAM (vit_sam)": "vit_sam"}
    planes = {label: json.loads((RESULTS / "geometry_demo_cpu" / run / "landscape.json").read_text())["plane"]
              for label, run in runs.items()}
    return draw.landscapes(planes, path)


def paper_cpu_claims(path: Path) -> Path:
    """paper-cpu's claims: each comparison's effect with its 95% interval, coloured by verdict."""
    claims = json.loads((RESULTS / "paper_cpu" / "report" / "claims.json").read_text())
    return draw.claims(claims_view.effects(claims), path, grey=bool(claims.get("smoke")))


FIGURES: dict[str, Callable[[Path], Path]] = {
    "geometry_demo_landscape_2d.png": geometry_demo_landscape,
    "paper_cpu_claims.png": paper_cpu_claims,
}


def draw_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [make(out / name) for name, make in FIGURES.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with docs/figures/ instead of writing")
    if not p.parse_args().check:
        for path in draw_all(OUT):
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1000} KB)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [p.name for p in draw_all(Path(tmp)) if not (OUT / p.name).is_file()
                 or (OUT / p.name).read_bytes() != p.read_bytes()]
    if stale:
        print(f"out of date in docs/figures/: {', '.join(stale)}; run python scripts/draw_docs_figures.py",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
