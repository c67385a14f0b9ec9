"""``sharpvision report``: a real tiny suite (two families, vanilla and SAM, two seeds) reported as Markdown and one
self-contained HTML page, plain run directories, the one-line errors, and the page rendered by a real browser."""

from __future__ import annotations

import base64
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
from sharpvision.experiments.claims import CLAIMS

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

    claims_rows = [line for line in section(md, "## Claims").splitlines() if line.startswith("| ")]
    assert claims_rows[0] == "| claim | paper | ours | verdict |"
    assert [row.split("|")[1].strip().split(":")[0] for row in claims_rows[2:]] == [c.id for c in CLAIMS]
    saved = json.loads((report / "claims.json").read_text())
    assert [c["id"] for c in saved["claims"]] == [c.id for c in CLAIMS]
    assert "Rule: Welch's t-test" in md

    # the stale results.json was not used: the groups are recomputed from the cells, accuracies in %
    vit = [cell(suite_dir, f"model=vit,setting=vanilla,seed={s}")["summary"]["test_accuracy"] for s in (0, 1)]
    all_rows = [r for r in section(md, "### Grid all").splitlines() if r.startswith("|")]
    assert all_rows[0].startswith("| model | setting | test acc. % | train acc. % | best val acc. % | lambda_max |")
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
    pair_rows = [r for r in section(md, "### Grid pair").splitlines() if r.startswith("| vit")]
    assert len(pair_rows) == 2 and all("(n=1)" in r and "±" not in r for r in pair_rows)  # the grid's one seed

    links = FIGURE_LINK.findall(md)
    on_disk = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert sorted(Path(link).name for link in links) == on_disk and len(links) == len(set(links))
    assert {"curves_vit.png", "curves_resnet.png", "sparsity_vit.png", "sparsity_resnet.png", "lambda_max_vit.png",
            "pair_vit_vanilla_landscape_2d.png", "pair_vit_sam_landscape_2d.png", "pair_vit_vanilla_attention.png",
            "pair_vit_sam_attention.png"} <= set(on_disk)
    assert "lambda_max_resnet.png" not in on_disk  # only the pair grid's ViT cells have a Hessian
    assert all((report / link).stat().st_size > 1000 for link in links)
    assert len(re.findall(r"^\*Figure \d+: .+\*$", md, flags=re.M)) == len(links)  # every figure captioned
    glossary = section(md, "## Glossary")
    assert all(f"- **{name}**: " in glossary for name in ("test_accuracy", "lambda_max", "n"))


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
    assert text.count('<span class="badge ') == len(CLAIMS)  # every verdict coloured
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


@pytest.mark.needs_fmnist
def test_a_real_browser_renders_the_page_with_the_claims_and_every_figure(report: Path, tmp_path: Path) -> None:
    from PIL import Image
    browser = chromium()
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1200,2000"]
    url = (report / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=60)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200) and pixels.var() > 0
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=60).stdout
    assert re.search(r'<table id="claims">', dom) and dom.count('<span class="badge ') == len(CLAIMS)
    figures = len(list((report / "figures").glob("*.png")))
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == figures
    assert dom.count("<figcaption>Figure ") == figures


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
    rows = [r for r in section(md, "### Grid all").splitlines() if r.startswith("|")]
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
