"""``sharpvision report``: a real tiny suite (two families, vanilla and SAM, two seeds) reported as Markdown and one
self-contained HTML page, plain run directories, the one-line errors, and the page rendered by a real browser."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from sharpvision.cli import main

SUITE = {
    "name": "report-test", "recipe": "tiny.yaml",
    "overrides": ["schedule.epochs=2", "schedule.warmup_epochs=0", "data.subset_train=32", "data.subset_test=32",
                  "data.batch_size=32", "data.val_fraction=0.002", "optim.sam=false", "train.log_every=2",
                  "train.threads=1"],
    "axes": {"model": {"vit": {"model.name": "vit_micro"}, "resnet": {"model.name": "resnet_micro"}},
             "setting": {"vanilla": {}, "sam": {"optim.sam": True, "optim.rho": 0.05}}, "seed": [0, 1]},
    "analysis": ["sparsity"],
    "analysis_settings": {"sample": 32, "batch_size": 32, "landscape_sample": 32, "landscape_steps": 5},
    # the second table: the ViT at seed 0 only, with the pieces that cost seconds
    "grids": {"all": {}, "pair": {"model": ["vit"], "seed": [0], "analysis": ["hessian", "landscape", "attention"]}},
}
FIGURE_LINK = re.compile(r"!\[[^\]]+\]\((figures/[^)]+\.png)\)")


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite trained and analysed once for the module, one thread (the 2-core CI machine is shared), with a
    stale results.json the report must not trust."""
    import torch

    from sharpvision import experiments
    root = tmp_path_factory.mktemp("suite")
    (root / "suite.src.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
    suite = experiments.load_suite(root / "suite.src.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiments.run_suite(suite, root / "out", suite.cells(), say=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    (root / "out" / "results.json").write_text(json.dumps({"cells": {}, "groups": {}}))
    return root / "out"


@pytest.fixture(scope="module")
def report(suite_dir: Path) -> Path:
    assert main(["report", str(suite_dir)]) == 0
    return suite_dir / "report"


def cell(suite_dir: Path, key: str) -> dict:
    return json.loads((suite_dir / "cells" / key / "result.json").read_text())


def section(markdown: str, heading: str) -> str:
    """The text under a heading, up to the next heading of any level."""
    start = markdown.index(heading) + len(heading)
    following = re.search(r"^#{1,3} ", markdown[start:], flags=re.M)
    return markdown[start:start + following.start()] if following else markdown[start:]


@pytest.mark.needs_fmnist
def test_the_suite_report_has_claims_a_table_per_grid_and_captioned_figures_on_disk(suite_dir: Path,
                                                                                    report: Path) -> None:
    md = (report / "report.md").read_text()
    order = [md.index(h) for h in ("# Suite report-test", "## Claims", "## Results", "### Grid all", "### Grid pair",
                                   "## Learning curves", "## Per block", "## Landscape and attention: vit",
                                   "## Glossary")]
    assert order == sorted(order)
    assert f"sharpvision reproduce {suite_dir}/suite.yaml --out {suite_dir}" in md
    assert "device cpu" in md and "torch " in md

    claims_md = section(md, "## Claims")
    assert claims_md.index("](figures/claims.png)") < claims_md.index("| claim |")  # the figure leads
    claims_rows = [line for line in claims_md.splitlines() if line.startswith("| ")]
    assert claims_rows[0] == "| claim | paper | ours: effect [95% CI] | verdict |"
    saved = json.loads((report / "claims.json").read_text())
    assert [row.split("|")[1].strip().split(":")[0] for row in claims_rows[2:]] == [c["id"] for c in saved["claims"]]
    assert f"Rule: {saved['rule']}" in md

    # the stale results.json was not used: the groups are recomputed from the cells, accuracies in points
    vit = [cell(suite_dir, f"model=vit,setting=vanilla,seed={s}")["summary"]["test_accuracy"] for s in (0, 1)]
    vit_sam = [cell(suite_dir, f"model=vit,setting=sam,seed={s}")["summary"]["test_accuracy"] for s in (0, 1)]
    short_md, full_md = section(md, "### Grid all").split("<details>")
    short_rows = [r for r in short_md.splitlines() if r.startswith("|")]
    assert short_rows[0].startswith("| model | setting | n | test acc. % | SAM gain, points | lambda_max")
    assert len(short_rows) == 2 + 4 and len(short_rows[0].split("|")) <= 12  # a table a reader compares across
    assert f"| vit | vanilla | 2 | {100 * statistics.fmean(vit):.1f} ± {100 * statistics.stdev(vit):.1f} |  |" in \
        short_md
    gains = [100 * (s - v) for s, v in zip(vit_sam, vit)]  # SAM's gain, paired by seed
    assert f"| {statistics.fmean(gains):+.1f} ± {statistics.stdev(gains):.1f} |" in \
        next(r for r in short_rows if r.startswith("| vit | sam |"))
    all_rows = [r for r in full_md.splitlines() if r.startswith("|")]  # the full table, folded below
    assert all_rows[0].startswith("| model | setting | test acc. % | train acc. % | best val acc. % | lambda_max")
    assert all_rows[0].endswith("| paper (ImageNet) |") and len(all_rows) == 2 + 4  # header, rule, 4 groups
    vit_row = next(r for r in all_rows if r.startswith("| vit | vanilla |"))
    assert f"| {100 * statistics.fmean(vit):.1f} ± {100 * statistics.stdev(vit):.1f} (n=2) |" in vit_row
    assert "ViT-B/16: top-1 74.6, lambda_max 738.8" in vit_row
    assert "ResNet-152: top-1 79.3, lambda_max 42.0" in next(r for r in all_rows if r.startswith("| resnet | sam |"))
    assert "trace" not in all_rows[0] and "NTK kappa" not in all_rows[0]  # no cell measured them: no column
    saved_results = json.loads((suite_dir / "results.json").read_text())  # and the stale file was brought up to date
    assert saved_results["cells_done"] == saved_results["cells_total"] == 8 and len(saved_results["groups"]) == 4
    assert saved_results["groups"]["model=vit,setting=vanilla"]["metrics"]["test_accuracy"]["mean"] == \
        pytest.approx(statistics.fmean(vit))
    pair_rows = [r for r in section(md, "### Grid pair").split("<details>")[1].splitlines() if r.startswith("| vit")]
    assert len(pair_rows) == 2 and all("(n=1)" in r and "±" not in r for r in pair_rows)  # the grid's one seed

    links = FIGURE_LINK.findall(md)
    on_disk = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert sorted(Path(link).name for link in links) == on_disk and len(links) == len(set(links))
    assert {"claims.png", "curves.png", "sparsity_vit.png", "sparsity_resnet.png", "lambda_max_vit.png",
            "pair_vit_landscape_2d.png", "pair_vit_vanilla_attention.png", "pair_vit_sam_attention.png"} <= set(on_disk)
    landscape = next(c for c in re.findall(r"^\*Figure \d+: (.+)\*$", md, flags=re.M) if "filter-normalised" in c)
    assert "vit, vanilla, seed 0 and vit, sam, seed 0" in landscape and "one colour scale" in landscape
    assert "lambda_max_resnet.png" not in on_disk  # only the pair grid's ViT cells have a Hessian
    assert all((report / link).stat().st_size > 1000 for link in links)
    assert len(re.findall(r"^\*Figure \d+: .+\*$", md, flags=re.M)) == len(links)  # every figure captioned
    glossary = section(md, "## Glossary")
    assert all(f"- **{name}**: " in glossary for name in ("test_accuracy", "n"))
    assert "- **lambda_max**: " in glossary or "- **hessian_lambda_max**: " in glossary


class Page(HTMLParser):
    """What a page loads: every src/href, and its images."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "img":
            self.images.append(found.get("src") or "")
        if "id" in found:
            self.ids.append(found["id"] or "")


@pytest.mark.needs_fmnist
def test_the_html_page_is_self_contained_with_every_figure_embedded(report: Path) -> None:
    text = (report / "report.html").read_text()
    page = Page()
    page.feed(text)
    assert not [link for link in page.links if re.match(r"(https?:)?//", link)]
    assert "<link" not in text and "<script" not in text and "@import" not in text
    files = sorted((report / "figures").glob("*.png"))
    assert len(page.images) == len(files) > 0
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in page.images)
    assert embedded == sorted(p.read_bytes() for p in files)
    assert {"claims", "results", "curves", "glossary"} <= set(page.ids)
    assert text.count('<span class="badge ') == len(json.loads((report / "claims.json").read_text())["claims"])
    assert 'class="badge smoke"' not in text and 'class="banner"' not in text  # not a smoke suite
    assert text.count("<figcaption>") == len(files)


@pytest.mark.needs_fmnist
def test_an_unknown_pair_model_is_refused_naming_the_ones_that_have_pictures(suite_dir: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(suite_dir), "--pair", "mixer", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pair mixer" in err[0] and "have: vit" in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.needs_fmnist
def test_run_directories_get_a_table_and_their_learning_curves(suite_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    keys = ["model=vit,setting=vanilla,seed=0", "model=resnet,setting=sam,seed=1"]
    monkeypatch.chdir(tmp_path)
    assert main(["report", *(str(suite_dir / "cells" / k / "run") for k in keys)]) == 0
    assert "wrote report/report.md" in capsys.readouterr().out
    md = Path("report/report.md").read_text()
    for key in keys:  # both folders are named run: their parents tell them apart
        summary = cell(suite_dir, key)["summary"]
        row = next(r for r in md.splitlines() if r.startswith(f"| {key}/run |"))
        assert f"| {summary['model']} |" in row and f"| {100 * summary['test_accuracy']:.1f} |" in row
    assert FIGURE_LINK.findall(md) == ["figures/curves.png"] and Path("report/figures/curves.png").is_file()
    assert not Path("report/claims.json").exists()
    assert Path("report/report.html").read_text().count("data:image/png;base64,") == 1


@pytest.mark.parametrize("make", ["missing", "empty", "suite without cells"])
def test_a_directory_without_runs_is_one_line_exit_2_and_nothing_written(tmp_path: Path, make: str,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "target"
    if make != "missing":
        target.mkdir()
    if make == "suite without cells":
        (target / "suite.yaml").write_text(yaml.safe_dump(SUITE))
        (target / "cells" / "model=vit,setting=sam,seed=0").mkdir(parents=True)  # started, not finished
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sharpvision report: error: ") and str(target) in err[0]
    assert not (tmp_path / "report").exists() and not (target / "report").exists()


def chromium() -> str:
    """The browser, or a skip here and a failure under CI (which installs it: .ci/run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must render the report in a real browser")
        pytest.skip("chromium is not installed")
    return found


def browse(browser: str, profile: Path, width: int, *args: str) -> list[str]:
    return [browser, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
            f"--window-size={width},2000", *args]


@pytest.mark.needs_fmnist
def test_a_real_browser_renders_the_page_with_the_claims_and_every_figure(report: Path, tmp_path: Path) -> None:
    from PIL import Image
    browser = chromium()
    url = (report / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run(browse(browser, tmp_path / "profile", 1200, f"--screenshot={shot}", url), check=True,
                   capture_output=True, timeout=60)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200) and pixels.var() > 0
    dom = subprocess.run(browse(browser, tmp_path / "profile", 1200, "--dump-dom", url), check=True,
                         capture_output=True, text=True, timeout=60).stdout
    claims = json.loads((report / "claims.json").read_text())["claims"]
    assert re.search(r'<table id="claims" class="fit">', dom) and dom.count('<span class="badge ') == len(claims)
    figures = len(list((report / "figures").glob("*.png")))
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == figures
    assert dom.count("<figcaption>Figure ") == figures


# measures the laid-out page in the browser: every folded table opened, then each table's width against its frame
# and the page's; the report itself has no script, so this runs on a copy
PROBE = """<script>
document.querySelectorAll("details").forEach(d => d.open = true);
const out = {page: document.documentElement.clientWidth, doc: document.documentElement.scrollWidth, tables: []};
document.querySelectorAll("table").forEach(t => out.tables.push({
  table: t.scrollWidth, frame: t.parentElement.clientWidth, right: t.parentElement.getBoundingClientRect().right,
  folded: t.closest("details") !== null, frameScrolls: getComputedStyle(t.parentElement).overflowX}));
const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("width", [1000, 1400])
def test_no_table_is_wider_than_the_page_in_a_real_browser(report: Path, tmp_path: Path, width: int) -> None:
    """The page never scrolls sideways; the short tables fit it; a folded full table scrolls inside its frame."""
    probe = tmp_path / "probe.html"
    probe.write_text((report / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(browse(chromium(), tmp_path / "profile", width, "--dump-dom", probe.as_uri()), check=True,
                         capture_output=True, text=True, timeout=60).stdout
    measured = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S).group(1)))
    assert width - 40 < measured["page"] <= width and measured["doc"] <= measured["page"]
    tables = measured["tables"]
    assert len(tables) >= 5 and any(t["folded"] and t["table"] > t["frame"] for t in tables)  # a wide one, folded
    for t in tables:
        assert t["right"] <= measured["page"] and t["frameScrolls"] == "auto"
        assert t["folded"] or t["table"] <= t["frame"], f"a short table is wider than the page: {t}"


@pytest.mark.needs_fmnist
def test_robustness_evaluated_on_the_cells_becomes_table_columns(suite_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """`sharpvision eval --corruptions / --attack` on a finished cell writes run/eval/; the report's tables then
    carry its mean corrupted accuracy and robust accuracy per eps, with their glossary lines."""
    import shutil
    copy = tmp_path / "suite"
    shutil.copytree(suite_dir, copy, ignore=shutil.ignore_patterns("report"))
    for seed in (0, 1):
        run = copy / "cells" / f"model=vit,setting=vanilla,seed={seed}" / "run"
        assert main(["eval", str(run), "--corruptions", "gaussian_noise,fog", "--severities", "1,5",
                     "--subset", "16"]) == 0
        assert main(["eval", str(run), "--attack", "pgd", "--eps", "0.05", "--steps", "1", "--subset", "16"]) == 0
    capsys.readouterr()
    assert main(["report", str(copy)]) == 0
    md = (copy / "report" / "report.md").read_text()
    short_md, full_md = section(md, "### Grid all").split("<details>")
    short_header = [h.strip() for h in next(r for r in short_md.splitlines() if r.startswith("|")).split("|")]
    assert short_header.index("corrupted acc. %") < short_header.index("PGD eps 0.05 acc. %")  # side by side
    rows = [r for r in full_md.splitlines() if r.startswith("|")]
    header = [h.strip() for h in rows[0].split("|")]
    assert header.index("mean corrupted acc. %") < header.index("PGD linf eps 0.05 acc. %")
    vit = next(r for r in rows if r.startswith("| vit | vanilla |")).split("|")
    runs = [copy / "cells" / f"model=vit,setting=vanilla,seed={s}" / "run" / "eval" for s in (0, 1)]
    corrupted = [json.loads((r / "corruptions.json").read_text())["mean_corruption_accuracy"] for r in runs]
    robust = [json.loads((r / "attack_pgd_linf.json").read_text())["accuracy"]["0.05"] for r in runs]
    assert vit[header.index("mean corrupted acc. %")].strip().startswith(f"{100 * statistics.fmean(corrupted):.1f}")
    assert vit[header.index("PGD linf eps 0.05 acc. %")].strip().startswith(f"{100 * statistics.fmean(robust):.1f}")
    resnet = next(r for r in rows if r.startswith("| resnet | vanilla |")).split("|")
    assert resnet[header.index("mean corrupted acc. %")].strip() == ""  # not evaluated: left empty, not zero
    assert "top-1 test accuracy under PGD (linf) at eps 0.05" in section(md, "## Glossary")


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.needs_fmnist
def test_the_report_is_redrawn_byte_identical_from_the_committed_files_alone(suite_dir: Path, report: Path,
                                                                             tmp_path: Path) -> None:
    """A results folder keeps JSON and no drawing (benchmarks/results): a copy without the PNGs, pages, training
    logs and checkpoints reports the same figures and pages, byte for byte, and so does a second rendering."""
    bare = tmp_path / "bare"
    shutil.copytree(suite_dir, bare, ignore=shutil.ignore_patterns("*.png", "*.html", "metrics.jsonl", "checkpoints",
                                                                   "tensorboard", "report"))
    assert not list(bare.rglob("*.png"))
    assert main(["report", str(bare), "--out", str(tmp_path / "one")]) == 0
    assert main(["report", str(bare), "--out", str(tmp_path / "two")]) == 0
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert one == two and len([n for n in one if n.endswith(".png")]) >= 8
    # the same pictures as from the full folder (its commands name its own directory, so the pages differ there)
    assert {n: b for n, b in one.items() if n.endswith(".png")} == \
        {n: b for n, b in files(report).items() if n.endswith(".png")}


def old_claims(smoke: bool) -> dict:
    """A claims.json as written before effects were recorded (each side's mean, std and n only), or smoke."""
    a, b = [0.80, 0.83, 0.81], [0.78, 0.79, 0.77]
    side = lambda v: {"mean": statistics.fmean(v), "std": statistics.stdev(v), "n": len(v)}  # noqa: E731
    return {"suite": "t", "alpha": 0.05, "rule": "Welch", "smoke": smoke, "claims": [
        {"id": "gain", "claim": "A beats B", "paper": "+1", "verdict": "holds",
         "tests": [{"compare": "a > b", "a": side(a), "b": side(b), "t": 3.1, "p": 0.03, "verdict": "holds"}]},
        {"id": "ntk_order", "claim": "kappa", "paper": "k", "verdict": "inconclusive",
         "tests": [{"compare": "vit > resnet", "a": side([3e7, 4e7]), "b": side([7e5, 8e5]), "p": 0.02,
                    "verdict": "holds"}]},
        {"id": "missing", "claim": "c", "paper": "p", "verdict": "not measured", "why": "no cells", "tests": []}]}


def test_an_old_claims_file_gets_welchs_interval_in_points_from_its_summaries(tmp_path: Path) -> None:
    from scipy import stats

    from sharpvision.report import claims as view
    claims = old_claims(smoke=False)
    found = view.effect("gain", claims["claims"][0]["tests"][0])
    ci = stats.ttest_ind([80, 83, 81], [78, 79, 77], equal_var=False).confidence_interval(0.95)
    assert found["unit"] == "points" and found["test"] == "welch" and found["n"] == 3
    assert found["effect"] == pytest.approx(100 * (statistics.fmean([0.80, 0.83, 0.81]) - 0.78))
    assert found["ci"] == pytest.approx([ci.low, ci.high])
    assert view.effect("ntk_order", claims["claims"][1]["tests"][0]) is None  # raw kappa: no unit to give it in
    new = {"compare": "x > y", "effect": 1.5, "ci": [0.5, 2.5], "unit": "log ratio", "test": "paired t", "n": 3}
    assert view.effect("ntk_order", new) == {k: new[k] for k in ("effect", "ci", "unit", "test", "n")}
    assert [e.label for e in view.effects(claims)] == ["gain: a > b"]
    assert view.ours(claims["claims"][0]).startswith(f"a > b: +{found['effect']:.1f} [+{ci.low:.1f}, +{ci.high:.1f}]"
                                                     " points (welch, n=3, p = 0.03)")


@pytest.mark.parametrize("smoke", [True, False])
def test_a_smoke_suite_gets_a_banner_and_grey_verdicts(tmp_path: Path, smoke: bool) -> None:
    from sharpvision.report import claims as view
    from sharpvision.report.render import to_html, to_markdown
    blocks = view.blocks(old_claims(smoke), tmp_path, view.is_smoke(old_claims(smoke), {}))
    md, page = to_markdown(blocks), to_html(blocks, tmp_path)
    assert ("> **Smoke test:" in md) is smoke and ('class="banner"' in page) is smoke
    badges = re.findall(r'<span class="badge ([^"]+)">([^<]+)</span>', page)
    assert [text for _, text in badges] == ["holds", "inconclusive", "not measured"]  # the verdicts still read
    kinds = [kind for kind, _ in badges]
    assert all(k == "smoke" for k in kinds) is smoke and ("holds" in kinds) is not smoke
    assert (tmp_path / "claims.png").stat().st_size > 1000
    assert view.is_smoke({"smoke": False}, {"smoke": True})  # the suite's own YAML says so


def test_learning_curve_panels_hold_at_most_four_lines() -> None:
    from sharpvision.report import figures as draw
    from sharpvision.report.suite import _split
    band = draw.Band((1, 2), (50.0, 60.0), (1.0, 2.0))
    panels = _split({"vit": {f"s{i}": band for i in range(6)}, "resnet": {"s0": band}})
    assert {t: list(lines) for t, lines in panels.items()} == {
        "vit (1/2)": ["s0", "s1", "s2", "s3"], "vit (2/2)": ["s4", "s5"], "resnet": ["s0"]}
    with pytest.raises(ValueError, match="more than 4 lines"):
        draw.panels({"vit": {f"s{i}": band for i in range(5)}}, Path("never.png"), "acc",
                    {f"s{i}": i for i in range(5)})


@pytest.mark.needs_fmnist
def test_a_run_folder_kept_without_its_training_log_draws_its_curve_from_curve_json(suite_dir: Path,
                                                                                    tmp_path: Path) -> None:
    """benchmarks/results keeps a plain run's per-epoch records as curve.json, not metrics.jsonl."""
    key = "model=vit,setting=sam,seed=0"
    run = tmp_path / "run"
    shutil.copytree(suite_dir / "cells" / key / "run", run, ignore=shutil.ignore_patterns("metrics.jsonl"))
    assert main(["report", str(run), "--out", str(tmp_path / "bare")]) == 0
    assert not (tmp_path / "bare" / "figures" / "curves.png").exists()  # no records: no curve, and no error
    (run / "curve.json").write_text(json.dumps(cell(suite_dir, key)["curve"]))
    assert main(["report", str(run), "--out", str(tmp_path / "kept")]) == 0
    assert main(["report", str(suite_dir / "cells" / key / "run"), "--out", str(tmp_path / "full")]) == 0
    assert (tmp_path / "kept" / "figures" / "curves.png").read_bytes() == \
        (tmp_path / "full" / "figures" / "curves.png").read_bytes()
    best = f"| {100 * max(r['val_accuracy'] for r in cell(suite_dir, key)['curve'] if 'val_accuracy' in r):.1f} |"
    assert best in (tmp_path / "kept" / "report.md").read_text()
