"""The docs stay true: quoted figures match their JSON, every result is quoted, links resolve, no test counts.

The figures blocks are written by scripts/docs_figures.py (``make docs``); this checks them without writing.
"""

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "benchmarks").rglob("*.md")),
         *sorted((ROOT / "studies").rglob("*.md"))]
# pages linked before they are written (each is checked to be still missing, so the list cannot go stale)
NOT_YET_WRITTEN: set[Path] = set()


def load_figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = load_figures()


def prose(text: str) -> str:
    """``text`` without fenced code blocks (commands and examples are not prose and hold no links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found, repeats = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{repeats[slug]}" if slug in repeats else slug)
        repeats[slug] = repeats.get(slug, 0) + 1
    return found


@pytest.mark.parametrize("page", figures.doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_figures_match_their_json(page: Path) -> None:
    text = page.read_text()
    for block in figures.BLOCK.finditer(text):
        name = block["name"]
        assert figures.render_block(name) in block[0], (
            f"{page.name}: the figures block {name!r} differs from benchmarks/results/{name}: run make docs")
    assert figures.render(text) == text, f"{page.name}: run make docs"


def test_every_result_is_quoted() -> None:
    """A result nobody quotes is a figure the docs forgot (GPU results included)."""
    quoted = {b["name"] for page in figures.doc_files() for b in figures.BLOCK.finditer(page.read_text())}
    results = {p.stem for p in figures.RESULTS.glob("*.json")} | {
        p.name for p in figures.RESULTS.iterdir() if (p / "compare.json").is_file()}
    assert results - quoted == set(), "results without a figures block in README.md or docs/"


def test_markers_standing_alone_are_blocks() -> None:
    """An opening marker without its end marker is an error, not a silently skipped block."""
    with pytest.raises(ValueError, match="end marker"):
        figures.render("<!-- figures: sam_overhead_cpu -->\ntext\n")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    """Every relative link names a file that exists and, for a Markdown page, a heading it has."""
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if file in NOT_YET_WRITTEN:
            assert not file.exists(), f"{file.relative_to(ROOT)} exists now: remove it from NOT_YET_WRITTEN"
            continue
        if _drawn_by_the_report(page, file):  # not committed: `sharpvision report DIR` redraws it from the JSON
            continue
        assert file.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        if fragment and file.suffix == ".md":
            assert fragment in anchors(file), f"{page.relative_to(ROOT)} links to {target}: no such heading"


def _drawn_by_the_report(page: Path, file: Path) -> bool:
    """A committed suite report's figure: report.md links to report/figures/*.png, which git ignores."""
    return (page.name == "report.md" and file.suffix == ".png" and file.parent == page.parent / "figures"
            and ROOT / "benchmarks" / "results" in page.parents)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_test_counts_in_prose(page: Path) -> None:
    """Counts of tests go stale with every test added; say what is tested instead."""
    counts = re.findall(r"\b\d[\d,]*\s+(?:\w+\s+)?(?:tests|test cases|cases|properties)\b|\b\d[\d,]*\s+bad inputs\b",
                        prose(page.read_text()))
    assert counts == [], f"{page.relative_to(ROOT)}: {counts}"


def test_the_gpu_script_runs_real_benchmarks_with_flags_they_take() -> None:
    """benchmarks/gpu_owed.sh runs only where a GPU is lent, so its commands are checked here, on every machine: each
    names a benchmark that exists, on CUDA, with flags that benchmark's parser takes."""
    script = ROOT / "benchmarks" / "gpu_owed.sh"
    lines = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert len(lines) >= 5
    for line in lines:
        timeout, seconds, _python, benchmark, *args = line.split()
        assert timeout == "timeout" and 0 < int(seconds) <= 180, line
        source = (ROOT / benchmark).read_text()
        assert args[:2] == ["--device", "cuda"], line
        for flag in (a for a in args if a.startswith("--")):
            assert f'add_argument("{flag}"' in source, f"{benchmark} takes no {flag}"
    assert sum(int(line.split()[1]) for line in lines) <= 9 * 60  # one device call, with time left to rerun
    bad = subprocess.run(["bash", str(script), "--gpu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --gpu" in bad.stderr


def _write_tables(path: Path, cells: list[dict]) -> None:
    """A made-up suite folder: its label_noise and variants tables built by the registered tables (what
    ``sharpvision report DIR`` writes), and one finished cell's summary for the source line."""
    from sharpvision.experiments.tables import TABLES
    results = {"cells": {str(i): c for i, c in enumerate(cells)}}
    (path / "tables").mkdir(parents=True)
    for name in ("label_noise", "variants"):
        (path / "tables" / f"{name}.json").write_text(json.dumps(TABLES[name].build(results)))
    (path / "cells" / "a").mkdir(parents=True)
    (path / "cells" / "a" / "result.json").write_text(json.dumps({"summary": {"device": "cpu", "torch": "2"}}))


def test_the_paper_cpu_views_pair_by_seed_and_leave_out_unpaired_cells(tmp_path: Path) -> None:
    """The label-noise and variants tables computed by hand on a made-up suite: gains paired by seed, a seed without
    its partner left out, the share of SAM's gain as a ratio of mean gains; the docs only format them."""
    def cell(setting: str, noise: str, seed: int, test: float, train: float = 0.9) -> dict:
        return {"labels": {"seed": str(seed), "model": "vit", "setting": setting, "data.fraction": "0.04",
                           "data.label_noise": noise}, "metrics": {"test_accuracy": test, "train_accuracy": train}}
    _write_tables(tmp_path, [cell("vanilla", "0.4", 0, 0.50, 0.80), cell("sam", "0.4", 0, 0.54, 0.70),
                             cell("vanilla", "0.4", 1, 0.60, 0.90), cell("sam", "0.4", 1, 0.62, 0.60),
                             cell("vanilla", "0.4", 2, 0.10),  # no SAM partner: left out
                             cell("sam5", "0.4", 0, 0.53), cell("sam5", "0.4", 1, 0.61)])
    noise = figures.RENDERERS["paper_cpu:noise"](tmp_path)
    assert "| 40% | 2 | 55.0 +- 7.1 | 58.0 +- 5.7 | +3.0 +- 1.4 | 85.0 +- 7.1 | 65.0 +- 7.1 |" in noise
    variants = figures.RENDERERS["paper_cpu:variants"](tmp_path)
    assert "| sam5 | 2 | 57.0 +- 5.7 | +2.0 +- 1.4 | 67% |" in variants  # (3 + 1) / 2 of SAM's (4 + 2) / 2
    assert "| looksam5 | 0 | not run yet | - | - |" in variants


def test_the_noise_families_view_takes_its_clean_row_from_paper_cpu(tmp_path: Path, monkeypatch) -> None:
    """The other families' label-noise table: its 0% row from paper-cpu's clean Table 2 cells at the full pool (not
    the 1/4 pool's, not another family's), the noisy rows from its own suite, SAM's gain paired by seed."""
    def cell(model: str, setting: str, noise: str, seed: int, test: float, fraction: str | None = None) -> dict:
        labels = {"seed": str(seed), "model": model, "setting": setting, "data.label_noise": noise}
        return {"labels": labels | ({"data.fraction": fraction} if fraction else {}),
                "metrics": {"test_accuracy": test, "train_accuracy": 0.9}}
    suites = {"paper_cpu": [cell("mixer", "vanilla", "0.0", 0, 0.80, "0.04"),
                            cell("mixer", "sam", "0.0", 0, 0.81, "0.04"),
                            cell("mixer", "vanilla", "0.0", 0, 0.10, "0.01"),  # the 1/4 pool: not this table's
                            cell("vit", "vanilla", "0.0", 0, 0.1, "0.04"), cell("vit", "sam", "0.0", 0, 0.1, "0.04")],
              "noise_families_cpu": [cell("mixer", "vanilla", "0.4", s, a) for s, a in ((0, 0.50), (1, 0.60))]
              + [cell("mixer", "sam", "0.4", s, a) for s, a in ((0, 0.56), (1, 0.58))]}
    for name, cells in suites.items():
        _write_tables(tmp_path / name, cells)
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    rows = [r for r in figures.RENDERERS["noise_families_cpu"](tmp_path / "noise_families_cpu").splitlines()
            if r.startswith("| `")]
    assert rows == ["| `mixer_micro` | 0% | 1 | 80.0 | 81.0 | +1.0 | 1/1 | 90.0 | 90.0 |",
                    "| `mixer_micro` | 40% | 2 | 55.0 +- 7.1 | 57.0 +- 1.4 | +2.0 +- 5.7 | 1/2 | 90.0 +- 0.0 | "
                    "90.0 +- 0.0 |"]


def test_a_suite_without_its_table_says_which_command_writes_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing; run sharpvision report"):
        figures.RENDERERS["paper_cpu:noise"](tmp_path)


def test_no_tracked_text_cites_a_tracker_number() -> None:
    """The project speaks of itself: a reader has no tracker, so docs, code, headers and results say the goal rather
    than cite an issue by its number."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    cited = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary
        cited += [f"{name.decode()}: {m.group(0).decode()}" for m in re.finditer(rb"\bissues?\s+#?\d+", data, re.I)]
    assert cited == []


def _claims(**test: object) -> dict:
    base = {"compare": "gain mixer > gain vit", "a": {"mean": 0.01, "std": 0.01, "n": 3},
            "b": {"mean": 0.0, "std": 0.01, "n": 3}, "p": 0.2, "verdict": "inconclusive", "paper": "+11.0 vs +5.3"}
    return {"suite": "s", "alpha": 0.05, "rule": "r", "claims": [
        {"id": "gain_by_family", "claim": "SAM's gain is largest for Mixer", "paper": "p", "verdict": "inconclusive",
         "tests": [base | test]}]}


def test_the_claims_table_prefers_the_effect_and_its_interval_and_never_prints_a_non_finite_number() -> None:
    """claims.json's effect and 95% CI (points) and its paper value, formatted; a missing effect reads "not measured"
    (the renderer computes nothing); a log ratio says so; a smoke suite gets its banner; every row fits 120 columns."""
    table = figures.claims_table
    with_ci = table(_claims(effect=1.234, ci=[-0.5, 2.9], unit="points", test="paired t", n=3, p=0.21))
    assert "| `gain mixer > gain vit` | +11.0 vs +5.3 | +1.2 [-0.5, +2.9], p = 0.21 | inconclusive |" in with_ci
    assert "[95% CI]" in with_ci.splitlines()[0]
    assert "| not measured |" in table(_claims())  # no effect in the file: never guessed from the means
    assert "not measured" in table(_claims(effect=None, ci=None, unit="points", n=3, p=None))
    infinite = table(_claims(a={"mean": float("inf"), "std": float("nan"), "n": 3}, p=None))
    assert "not measured" in infinite and "inf" not in infinite and "nan" not in infinite
    log = table(_claims(effect=-0.31, ci=[-0.52, -0.1], unit="log ratio", n=3, p=0.01))
    assert "-0.31 [-0.52, -0.10] log ratio, p = 0.01" in log
    assert "smoke test" in table(_claims() | {"smoke": True}).splitlines()[0]
    long = _claims(effect=-12.345, ci=[-99.9, 99.9], unit="points", n=3, p=0.5, paper="not retrieved",
                   compare="mixer: gain at fraction 0.01 > gain at 0.04")  # the longest comparison, as it is written
    long["claims"][0]["claim"] = ("SAM's gain grows as the data shrinks, and for ViT and Mixer SAM beats AUG on small "
                                  "data")
    assert all(len(row) <= 120 for row in table(long).splitlines())
