"""The scale ladder: the suite checks made when it loads, the trend tests on results built to decide them, lambda_max
at matched training loss in the loop, and the NTK of a zero-initialised head."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import FAST, TINY

from sharpvision import config, models
from sharpvision.analysis import ntk
from sharpvision.experiments import ladder
from sharpvision.experiments.claimsets import evaluate_suite
from sharpvision.experiments.suite import SuiteError, load_suite

RUNGS = ("2350", "6000", "15000")


def _suite(tmp_path: Path, rungs: tuple[str, ...] = RUNGS, wide_at: str = "6000", **extra: object) -> Path:
    spec = {"name": "ladder-test", "recipe": str(TINY), "claims": "ladder",
            "axes": {"train_images": {r: {"data.subset_train": int(r) // 50} for r in rungs},
                     "seed": {str(s): {"seed": s, "data.seed": s} for s in (0, 1)},
                     "model": {"vit": {"model.name": "vit_micro"}, "resnet": {"model.name": "resnet_micro"},
                               "vit2": {"model.name": "vit_micro_x2"}, "resnet2": {"model.name": "resnet_micro_x2"}},
                     "setting": {"vanilla": {"optim.sam": False}, "sam": {"optim.sam": True}}},
            "grids": {"data": {"model": ["vit", "resnet"]},
                      "size": {"model": ["vit2", "resnet2"], "train_images": [wide_at]}}} | extra
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_ladder_suite_loads_with_where_rules_and_ties_the_data_draw_to_the_seed(tmp_path: Path) -> None:
    where = [{"when": {"model": "vit", "train_images": "6000"}, "set": {"optim.rho": 0.1}}]
    suite = load_suite(_suite(tmp_path, where=where))
    cells = {c.key: c for c in suite.cells()}
    assert len(cells) == 2 * 3 * 2 * 2 + 2 * 2 * 2  # micro pair at every rung, the wide pair at one
    hit = cells["train_images=6000,seed=1,model=vit,setting=sam"]
    cfg = suite.recipe_of(hit)
    assert cfg.optim.rho == 0.1 and cfg.seed == 1 and cfg.data.seed == 1
    other = suite.recipe_of(cells["train_images=2350,seed=1,model=vit,setting=sam"])
    assert other.optim.rho == config.load(TINY).optim.rho  # the rule reaches only the cells it names


@pytest.mark.parametrize(("change", "culprit"), [
    ({"rungs": ("2350",), "wide_at": "2350"}, "at least 2 rungs of train_images"),
    ({"wide_at": "15000", "grids": {"data": {"model": ["vit", "resnet"], "train_images": ["2350", "6000"]},
                                    "size": {"model": ["vit2", "resnet2"], "train_images": ["15000"]}}},
     "exactly one train_images rung of the micro ones"),
    ({"grids": {"data": {"model": ["vit", "resnet"], "setting": ["sam"]},
                "size": {"model": ["vit2", "resnet2"], "train_images": ["6000"]}}},
     "no cell of model=vit, setting=vanilla"),
    ({"where": [{"when": {"model": "convnext"}, "set": {"optim.rho": 0.1}}]}, "where[0].when: model=convnext"),
    ({"claims": "ladders"}, "claims 'ladders' unknown"),
])
def test_a_ladder_that_cannot_answer_its_tests_is_refused_when_it_loads(tmp_path: Path, change: dict,
                                                                          culprit: str) -> None:
    kwargs = {k: change.pop(k) for k in ("rungs", "wide_at") if k in change}
    with pytest.raises(SuiteError, match="^suite .*" + culprit.replace("[", r"\[").replace("]", r"\]")):
        load_suite(_suite(tmp_path, **kwargs, **change))


def _results(acc: dict[tuple[str, str, str], list[float]], lam: dict[tuple[str, str], list[float]] | None = None
             ) -> dict:
    """results.json's shape from (model, setting, rung) -> accuracy per seed, and (model, rung) -> AdamW
    lambda_max at matched loss per seed."""
    cells = {}
    for (model, setting, rung), values in acc.items():
        for seed, value in enumerate(values):
            labels = {"train_images": rung, "seed": str(seed), "model": model, "setting": setting}
            metrics = {"test_accuracy": value}
            if lam and setting == "vanilla" and (model, rung) in lam:
                metrics["lambda_max_matched"] = metrics["lambda_max"] = lam[(model, rung)][seed]
            cells[",".join(f"{k}={v}" for k, v in labels.items())] = {"labels": labels, "metrics": metrics}
    axes = {"train_images": sorted({k[2] for k in acc}, key=float), "seed": ["0", "1", "2"],
            "model": ["vit", "resnet", "vit2", "resnet2"], "setting": ["vanilla", "sam"]}
    return {"suite": "ladder-test", "axes": axes, "cells": cells, "claims": "ladder"}


def _by_id(results: dict) -> dict[str, dict]:
    out = evaluate_suite(results, "ladder")
    json.dumps(out, allow_nan=False)
    return {c["id"]: c for c in out["claims"]}


def test_gain_and_gap_trends_with_a_crossing_inside_or_beyond_the_range() -> None:
    """SAM's ViT gain shrinks by 2 points per doubling of data while the ResNet's stays at +0.5; the ViT-SAM gap to
    the ResNet closes by 3 points per doubling."""
    acc, jitter = {}, [0.001, -0.002, 0.0015]
    for i, rung in enumerate(RUNGS):
        x = math.log2(float(rung)) - math.log2(2350)
        for model, base in (("vit", 0.70), ("resnet", 0.80)):
            gain = (0.08 - 0.02 * x) if model == "vit" else 0.005
            acc[(model, "vanilla", rung)] = [base + 0.03 * x + j for j in jitter]
            acc[(model, "sam", rung)] = [base + 0.03 * x + gain + j * (1 + i) for j in jitter]
        for model in ("vit2", "resnet2"):
            acc[(model, "vanilla", rung)] = acc[(model[:-1], "vanilla", rung)]
            acc[(model, "sam", rung)] = acc[(model[:-1], "sam", rung)]
    got = _by_id(_results({k: v for k, v in acc.items() if k[0] in ("vit", "resnet") or k[2] == "6000"}))
    gain = got["gain_vs_data"]["tests"][0]
    assert gain["verdict"] == "holds" and gain["predicted"] == "negative"  # the paper's direction: negative
    assert gain["effect"] == pytest.approx(-2.0, abs=0.2) and gain["n"] == 3 and gain["rungs"] == list(RUNGS)
    assert "partial" not in gain and "partial" not in gain["test"]  # every rung of the suite is in
    gap = got["gap_vs_data"]["tests"][0]
    # gap = (0.70 + gain_vit) - 0.80 = -0.02 - 0.02 x + ... : at x=0 it is -2 points and falls: contradicted
    assert gap["verdict"] == "contradicted"
    # where a trend holds, the crossing is reported with its interval, and said to be an extrapolation if it is
    assert gain["crossing_images"] == pytest.approx(2350 * 2 ** 3.75, rel=0.1)  # 7.5 - 2 x = 0
    assert gain["crossing_is"].startswith("an extrapolation")
    # the model rung: the 2x pair copies the micro pair, so the difference is zero: not a finding either way
    assert got["gain_vs_model"]["tests"][0]["verdict"] == "inconclusive"


def test_sharpness_ratio_uses_matched_loss_and_is_not_measured_without_it() -> None:
    acc = {(m, s, r): [0.7, 0.71, 0.72] for m in ("vit", "resnet", "vit2", "resnet2") for s in ("vanilla", "sam")
           for r in RUNGS if m in ("vit", "resnet") or r == "6000"}
    lam = {("vit", r): [10.0 * 2 ** i * f for f in (1.0, 1.1, 0.9)] for i, r in enumerate(RUNGS)}
    lam |= {("resnet", r): [20.0, 21.0, 19.0] for r in RUNGS}
    lam |= {("vit2", "6000"): [80.0, 88.0, 72.0], ("resnet2", "6000"): [20.0, 21.0, 19.0]}
    got = _by_id(_results(acc, lam))
    trend = got["sharpness_vs_data"]["tests"][0]
    # log(vit / resnet) rises by log(2) per rung; the rungs are 1.35 and 1.32 doublings apart
    x = np.log2([float(r) for r in RUNGS])
    assert trend["verdict"] == "holds" and trend["unit"] == "log ratio per doubling"
    assert trend["effect"] == pytest.approx(np.polyfit(x, np.log(2) * np.arange(3), 1)[0], rel=0.05)
    assert got["sharpness_vs_model"]["tests"][0]["verdict"] == "holds"
    unmatched = _by_id(_results(acc))
    assert unmatched["sharpness_vs_data"]["verdict"] == "not measured"
    assert "lambda_max_matched" in unmatched["sharpness_vs_data"]["why"]


@pytest.mark.needs_fmnist
def test_lambda_max_at_matched_loss_is_measured_once_and_kept(tmp_path: Path) -> None:
    """The first epoch whose training loss is below the level gets lambda_max by the loop's estimator and its
    weights kept in run/matched/; later epochs do not measure again, and the summary says which epoch it was."""
    from sharpvision.train import train
    cfg = config.load(TINY, [*FAST, "schedule.epochs=2", "train.matched_loss=100", "train.lambda_max_sample=64",
                             "train.lambda_max_every=2"])
    summary = train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "train_loss" in r]
    matched = [r for r in epochs if "lambda_max_matched" in r]
    assert [r["epoch"] for r in matched] == [0] and matched[0]["matched_epoch"] == 0
    assert matched[0]["lambda_max_matched"] > 0 and summary["matched_epoch"] == 0
    manifest = json.loads(next((tmp_path / "run" / "matched").glob("*/manifest.json")).read_text())
    assert manifest["epoch"] == 1 and manifest["matched_loss"] == 100
    never = train(config.load(TINY, [*FAST, "schedule.epochs=1", "train.matched_loss=1e-9",
                                     "train.lambda_max_sample=64"]), tmp_path / "never", progress=False)
    assert never["matched_epoch"] is None and not (tmp_path / "never" / "matched").exists()
    with pytest.raises(config.ConfigError, match="train.matched_loss"):
        config.load(TINY, ["train.matched_loss=0"])


def test_the_ntk_of_a_zero_initialised_head_is_measured_with_a_drawn_head() -> None:
    """timm starts the Mixer's head at zero: the kernel's rank is then at most the width and kappa is inf. With the
    head drawn as the ViT's, the kernel has full rank and kappa is finite; a model with a drawn head is untouched."""
    torch.manual_seed(0)
    mixer = models.create("mixer_micro", num_classes=10, img_size=28, in_chans=1).eval()
    x = torch.randn(40, 1, 28, 28)
    assert not mixer.get_classifier().weight.any()
    got = ntk.ntk_condition_number(mixer, x)
    assert math.isfinite(got["kappa"]) and got["head"].startswith("redrawn")
    assert not mixer.get_classifier().weight.any()  # the caller's model is left as it was
    vit = models.create("vit_micro", num_classes=10, img_size=28, in_chans=1).eval()
    assert ntk.drawn_head(vit)[0] is vit and ntk.ntk_condition_number(vit, x)["head"] == "as initialised"


def test_selection_chooses_rho_on_validation_and_one_matched_loss_per_rung() -> None:
    """Only the selection seeds' validation accuracy picks rho (a tie goes to the smaller rho); the matched-loss
    level is one per rung, the highest of its families' AdamW training losses at half their epochs; a family is
    chosen once its own runs and every family's AdamW runs at the rung have finished."""
    def cell(model: str, setting: str, val: float, test: float, losses: list[float], rung: str = "2350") -> dict:
        labels = {"train_images": rung, "seed": "100", "model": model, "setting": setting}
        return {"labels": labels, "metrics": {"val_accuracy": val, "test_accuracy": test},
                "curve": [{"epoch": i, "train_loss": v} for i, v in enumerate(losses)]}
    vit, resnet = [2.0, 1.0, 0.5, 0.25], [1.0, 0.1, 0.01, 0.001]
    cells = [cell("vit", "vanilla", 0.70, 0.9, vit), cell("vit", "rho0.02", 0.72, 0.1, vit),
             cell("vit", "rho0.05", 0.74, 0.1, vit), cell("vit", "rho0.1", 0.74, 0.1, vit),
             cell("vit", "rho0.2", 0.71, 0.99, vit), cell("resnet", "vanilla", 0.8, 0.8, resnet)]
    results = {"cells": {str(i): c for i, c in enumerate(cells)}}
    early = ladder.choices(results)  # the ResNet has no SAM runs yet: the ViT's choice does not wait for them
    assert list(early) == [("vit", "2350")] and early[("vit", "2350")]["matched_loss"] == 1.0
    without_adamw = {str(i): c for i, c in enumerate(cells) if c["labels"]["model"] == "vit"}
    assert ladder.choices({"cells": without_adamw}, {("vit", "2350"), ("resnet", "2350")}) == {}  # level unknown
    cells += [cell("resnet", f"rho{r}", 0.8 + (r == "0.2") / 100, 0.0, resnet) for r in ladder.RHOS]
    cells += [cell("vit", "vanilla", 0.7, 0.9, vit, "6000")]  # a rung with a family unfinished
    got = ladder.choices({"cells": {str(i): c for i, c in enumerate(cells)}})
    assert sorted(got) == [("resnet", "2350"), ("vit", "2350")]
    assert got[("vit", "2350")]["rho"] == 0.05 and got[("resnet", "2350")]["rho"] == 0.2
    assert got[("vit", "2350")]["family_loss_at_half"] == 1.0 and got[("resnet", "2350")]["family_loss_at_half"] == 0.1
    assert {c["matched_loss"] for c in got.values()} == {1.0}  # one level for the rung: the highest
    assert ladder.choices({"cells": {str(i): c for i, c in enumerate(cells)}}, {("vit", "2350")}) == {
        ("vit", "2350"): got[("vit", "2350")]}
    assert ladder.where_rules(got)[1] == {"when": {"model": "vit", "train_images": "2350"},
                                          "set": {"optim.rho": 0.05, "train.matched_loss": 1.0}}
    expected = [c["labels"] for c in cells] + [{"train_images": "6000", "seed": "100", "model": m, "setting": s}
                                               for m in ("vit", "resnet") for s in ("vanilla", "rho0.2")]
    assert ladder.unfinished({"cells": {str(i): c for i, c in enumerate(cells)}}, expected) == {
        "6000": ["vit rho0.2", "resnet vanilla", "resnet rho0.2"]}


def test_a_reanalysis_keeps_the_verdicts_of_the_earlier_rule() -> None:
    results = _results({(m, s, r): [0.7, 0.72, 0.71] for m in ("vit", "resnet") for s in ("vanilla", "sam")
                        for r in RUNGS})
    results["claims"] = "paper"
    old = {"rule": "an earlier rule", "claims": [{"id": "vit_sam_vs_resnet", "verdict": "contradicted"}]}
    first = evaluate_suite(results, "paper", old)
    claim = next(c for c in first["claims"] if c["id"] == "vit_sam_vs_resnet")
    assert claim["reanalysed"] == {"verdict": "contradicted", "rule": "an earlier rule"}
    again = evaluate_suite(results, "paper", first)  # re-running the report keeps the first record
    assert next(c for c in again["claims"] if c["id"] == "vit_sam_vs_resnet")["reanalysed"] == claim["reanalysed"]


@pytest.mark.parametrize("name", ["paper-tiny", "paper-gpu", "ladder-select"])
def test_suites_written_since_the_fix_draw_the_data_with_the_seed(name: str) -> None:
    """A seed varies everything a seed should: the training draw, the validation split and the noisy labels."""
    suite = load_suite(name)
    seeds = {(cfg.seed, cfg.data.seed) for cfg in map(suite.recipe_of, suite.cells())}
    assert all(a == b for a, b in seeds) and len(seeds) >= 1
    assert suite.smoke is (name == "paper-tiny")  # the smoke suite says its numbers mean nothing


def test_selection_seeds_are_not_reported_seeds() -> None:
    assert {c.label("seed") for c in load_suite("ladder-select").cells()} == {"100"}


def test_the_ladder_table_and_figure(tmp_path: Path) -> None:
    """Per rung and family: both settings' accuracy in points, SAM's gain paired by seed with its interval, and
    the sharpness ratio per rung; the report draws them into one figure and two tables."""
    from sharpvision.report import ladder as view
    acc = {(m, s, r): [0.70 + (0.02 if s == "sam" and m == "vit" else 0.0) + 0.01 * k for k in range(3)]
           for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    lam = {("vit", r): [10.0, 12.0, 11.0] for r in RUNGS[:2]} | {("resnet", r): [20.0, 22.0, 21.0] for r in RUNGS[:2]}
    results = _results(acc, lam)
    rows = ladder.rung_table(results)
    vit = next(r for r in rows if r.get("model") == "vit" and r["train_images"] == "2350")
    assert vit["gain"]["effect"] == pytest.approx(2.0) and vit["adamw"]["mean"] == pytest.approx(71.0)
    ratio = next(r for r in rows if r.get("metric") == "lambda_max_matched" and r["train_images"] == "6000")
    assert ratio["log_ratio"]["effect"] == pytest.approx(np.mean(np.log([10 / 20, 12 / 22, 11 / 21])))
    gap = next(r for r in rows if r.get("contrast") == "gap" and r["train_images"] == "2350")
    difference = next(r for r in rows if r.get("contrast") == "gain_difference" and r["train_images"] == "2350")
    assert gap["model"] == "vit / resnet" and gap["points"]["effect"] == pytest.approx(2.0)  # 72+k - (70+k)
    assert difference["points"]["effect"] == pytest.approx(2.0) and difference["points"]["n"] == 3  # 2 - 0
    blocks = view.blocks(results, tmp_path)
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
    tables = [b for b in blocks if type(b).__name__ == "Table"]
    assert len(tables) == 3 and tables[0].rows[0][4].startswith("+0.0") is False
    assert tables[1].rows[0][:2] == ("2350", "vit / resnet") and tables[1].rows[0][2].startswith("+2.0")
    assert view.blocks({"cells": {}, "axes": {}}, tmp_path) == []  # nothing finished: no section


def test_the_command_refuses_a_ladder_that_cannot_answer_in_one_line(tmp_path: Path, capsys) -> None:
    from sharpvision.cli import main
    path = _suite(tmp_path, rungs=("2350",), wide_at="2350")
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "at least 2 rungs of train_images" in err[0] and not out.exists()


def test_a_ladder_cell_runs_only_once_its_choices_are_made(tmp_path: Path, capsys) -> None:
    """No ladder cell trains with a rho nobody chose: the command refuses, before any work, the cells of a
    (family, rung) that no where rule covers, and runs those narrowed to the rungs that have their choices."""
    from sharpvision.cli import main
    where = [{"when": {"model": m, "train_images": "2350"}, "set": {"optim.rho": 0.05, "train.matched_loss": 0.3}}
             for m in ("vit", "resnet")]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    path = _suite(tmp_path / "a", where=where)
    suite = load_suite(path)
    assert ladder.waiting(suite, [c for c in suite.cells() if c.label("train_images") == "2350"]) is None
    rho_only = [{"when": {"model": "vit"}, "set": {"optim.rho": 0.05}}]  # a rho without its matched-loss level
    assert "vit at 2350" in ladder.waiting(load_suite(_suite(tmp_path / "b", where=rho_only)), suite.cells()[:1])
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "vit at 6000" in err[0] and "resnet2 at 6000" in err[0] and not out.exists()
    assert "at 2350" not in err[0]


def test_a_ladder_directory_takes_a_new_rungs_choices_but_never_changes_a_started_cell(tmp_path: Path) -> None:
    from sharpvision.experiments.runner import claim
    rule = {"when": {"model": "vit", "train_images": "2350"}, "set": {"optim.rho": 0.05, "train.matched_loss": 0.3}}
    out = tmp_path / "out"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    claim(load_suite(_suite(tmp_path / "a", where=[rule])), out)
    (out / "cells" / "train_images=2350,seed=0,model=vit,setting=sam" / "run").mkdir(parents=True)
    grown = [rule, {"when": {"model": "vit", "train_images": "6000"}, "set": {"optim.rho": 0.1}}]
    claim(load_suite(_suite(tmp_path / "b", where=grown)), out)  # a new rung's choices: accepted and saved
    assert yaml.safe_load((out / "suite.yaml").read_text())["where"] == grown
    moved = [{**rule, "set": {"optim.rho": 0.2, "train.matched_loss": 0.3}}, grown[1]]
    with pytest.raises(SuiteError, match=r"would change cell train_images=2350,seed=0,model=vit,setting=sam"):
        claim(load_suite(_suite(tmp_path / "c", where=moved)), out)
    assert yaml.safe_load((out / "suite.yaml").read_text())["where"] == grown  # the refused suite left no trace


def test_the_ladder_table_carries_robustness_where_cells_were_evaluated(tmp_path: Path) -> None:
    """Corruption and PGD accuracy per family and rung, SAM's gain paired by seed; only the measures both settings
    have, in reading order (corruptions, then PGD by eps)."""
    from sharpvision.report import ladder as view
    acc = {(m, s, r): [0.70, 0.71, 0.72] for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    results = _results(acc)
    for cell in results["cells"].values():
        if cell["labels"]["model"] == "vit" and cell["labels"]["train_images"] == "2350":
            sam, seed = cell["labels"]["setting"] == "sam", int(cell["labels"]["seed"])
            cell["metrics"] |= {"pgd_linf_accuracy@0.1": 0.2 + 0.01 * seed + 0.05 * sam,  # sorts after 0.01 as
                                "pgd_linf_accuracy@0.01": 0.5 + 0.02 * sam}  # a number, before it as text
            if not (sam and seed == 2):  # SAM's seed 2 not evaluated: both columns over the seeds both have
                cell["metrics"]["mean_corruption_accuracy"] = 0.6 + 0.03 * sam + 0.01 * seed
            if sam:
                cell["metrics"]["mnist_c_mean_accuracy"] = 0.5  # one setting only: no gain, not shown
    rows = ladder.rung_table(results)
    vit = next(r for r in rows if r.get("model") == "vit" and r["train_images"] == "2350")
    assert [m["measure"] for m in vit["robustness"]] == [
        "mean_corruption_accuracy", "pgd_linf_accuracy@0.01", "pgd_linf_accuracy@0.1"]
    assert [m["gain"]["effect"] for m in vit["robustness"]] == pytest.approx([3.0, 2.0, 5.0])
    corruption = vit["robustness"][0]
    assert corruption["gain"]["n"] == corruption["adamw"]["n"] == corruption["sam"]["n"] == 2
    assert corruption["sam"]["mean"] - corruption["adamw"]["mean"] == pytest.approx(3.0)  # AdamW 60.5, not 61
    assert all(r["robustness"] == [] for r in rows if "gain" in r and r is not vit)
    table = [b for b in view.blocks(results, tmp_path) if type(b).__name__ == "Table"][-1]
    assert table.id == "ladder-robustness" and [row[2] for row in table.rows] == [
        "corruptions (mean)", "PGD L-inf, eps 0.01", "PGD L-inf, eps 0.1"]
    assert table.rows[2][5].startswith("+5.0")


def test_a_trend_is_read_over_the_rungs_finished_so_far_and_says_which() -> None:
    """The ladder runs rung by rung: with 2,350 complete, 6,000 at two seeds and 15,000 not started, each data trend
    uses the two finished rungs and the seeds they share, and names them; with one rung it is not measured."""
    acc = {(m, s, r): [0.70 + 0.01 * k + (0.02 if (m, s, r) == ("vit", "sam", "2350") else 0.0) for k in range(3)]
           for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    results = _results(acc)
    results["axes"]["train_images"] = list(RUNGS)  # the suite's three rungs; 15,000 has no cell yet
    results["cells"] = {k: c for k, c in results["cells"].items()
                        if not (c["labels"]["train_images"] == "6000" and c["labels"]["seed"] == "2")}
    gain = _by_id(results)["gain_vs_data"]["tests"][0]
    assert gain["rungs"] == ["2350", "6000"] and gain["n"] == 2
    assert gain["partial"] == "rungs 2350, 6000 of 2350, 6000, 15000" and gain["test"].endswith(gain["partial"])
    # ViT's gain: 2 points at 2,350 and 0 at 6,000, the ResNet's 0 at both: -2 over log2(6000 / 2350) doublings
    assert gain["effect"] == pytest.approx(-2.0 / math.log2(6000 / 2350))
    one_rung = {k: c for k, c in results["cells"].items() if c["labels"]["train_images"] == "2350"}
    claim = _by_id(results | {"cells": one_rung})["gain_vs_data"]
    assert claim["verdict"] == "not measured" and "needs two train_images rungs with it; found 2350" in claim["why"]


def test_the_ladder_figure_shows_every_rung_when_a_family_has_one(tmp_path: Path, monkeypatch) -> None:
    """A family with one rung so far (the Mixer) must not narrow the axis to that rung and hide the others."""
    from sharpvision.report import ladder as view
    acc = {(m, s, r): [0.70, 0.71, 0.72] for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    acc |= {("mixer", s, "2350"): [0.70, 0.71, 0.72] for s in ("vanilla", "sam")}
    drawn = []
    monkeypatch.setattr(view, "save_figure", lambda fig, path: drawn.append(fig) or path)
    view.draw(ladder.rung_table(_results(acc)), tmp_path / "ladder.png")
    left = drawn[0].axes[0]
    assert left.get_xlim()[0] < 2350 and left.get_xlim()[1] > 6000


def test_the_ladder_figure_draws_the_model_rung_against_width_not_over_the_micro_points(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    """The 2x-wide pair sits at one data rung: a second row draws each family at micro and 2x width there, and the
    panels against data keep to the micro families, where a wide point would hide behind a micro one."""
    from sharpvision.report import ladder as view
    acc = {(m, s, r): [0.70 + (0.03 if s == "sam" and m == "vit2" else 0.0), 0.71, 0.72]
           for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    acc |= {(m, s, "6000"): [0.70 + (0.03 if s == "sam" and m == "vit2" else 0.0), 0.71, 0.72]
            for m in ("vit2", "resnet2") for s in ("vanilla", "sam")}
    lam = {(m, r): [10.0, 12.0, 11.0] for m in ("vit", "resnet") for r in RUNGS[:2]}
    lam |= {("vit2", "6000"): [40.0, 48.0, 44.0], ("resnet2", "6000"): [20.0, 22.0, 21.0]}
    drawn = []
    monkeypatch.setattr(view, "save_figure", lambda fig, path: drawn.append(fig) or path)
    view.draw(ladder.rung_table(_results(acc, lam)), tmp_path / "ladder.png")
    data_gain, data_ratio, width_gain, width_ratio = drawn[0].axes
    lines = {(ax, c.get_label()): c.lines[0] for ax in drawn[0].axes for c in ax.containers}  # errorbar: data line
    assert [c.get_label() for c in data_gain.containers] == ["vit", "resnet"]  # no vit2 among the data rungs
    assert [c.get_label() for c in data_ratio.containers] == ["vit / resnet, matched loss", "vit / resnet, end"]
    vit = lines[(width_gain, "vit")]
    assert list(vit.get_xdata()) == [1.0, 2.0] and list(vit.get_ydata()) == pytest.approx([0.0, 1.0])
    matched = lines[(width_ratio, "vit / resnet, matched loss")]
    assert matched.get_ydata()[1] == pytest.approx(np.mean(np.log([40 / 20, 48 / 22, 44 / 21])))
    assert matched.get_ydata()[0] == pytest.approx(0.0)  # the micro pair: equal lambda_max
    drawn.clear()
    view.draw(ladder.rung_table(_results({k: v for k, v in acc.items() if k[0] in ladder.MICRO})), tmp_path / "b")
    assert len(drawn[0].axes) == 2  # no model rung yet: one row


def test_a_model_size_comparison_over_fewer_seeds_than_the_suite_says_it_is_partial() -> None:
    """The model rung runs seed by seed: with the 2x-wide pair at two of three seeds, each model-size test names the
    seeds it has; with all three it carries no such mark."""
    acc = {(m, s, r): [0.70, 0.71, 0.72] for m in ("vit", "resnet") for s in ("vanilla", "sam") for r in RUNGS[:2]}
    acc |= {(m, s, "6000"): [0.70 + (0.02 if (m, s) == ("vit2", "sam") else 0.0), 0.71, 0.72]
            for m in ("vit2", "resnet2") for s in ("vanilla", "sam")}
    results = _results(acc)
    whole = _by_id(results)["gain_vs_model"]["tests"][0]
    assert "partial" not in whole["compare"] and whole["n"] == 3
    results["cells"] = {k: c for k, c in results["cells"].items()
                        if not (c["labels"]["model"] == "vit2" and c["labels"]["seed"] == "2")}
    for claim in ("gain_vs_model", "gap_vs_model"):
        test = _by_id(results)[claim]["tests"][0]
        assert test["n"] == 2 and test["compare"].endswith("; partial: 2 of 3 seeds")
