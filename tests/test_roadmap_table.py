"""The roadmap grid's table (sharpvision.experiments.tables.roadmap): each step compared with the step it modifies,
SAM's gain paired by seed, and the tests over steps fixed before the grid ran, checked against hand-computed values;
and the docs' view of it, which only formats."""

import json
from pathlib import Path

import pytest
from scipy import stats
from test_docs import figures

from sharpvision.experiments.tables import TABLES
from sharpvision.experiments.tables import roadmap as roadmap_table
from sharpvision.models.roadmap import STEPS

# test accuracy by step, setting and seed; step 11 (GELU) modifies step 08, not step 10, and 08's base is absent
ACC = {0: {"vanilla": (0.80, 0.82), "sam": (0.81, 0.85)},
       1: {"vanilla": (0.83, 0.85), "sam": (0.84, 0.86)},   # change +3 / +2
       2: {"vanilla": (0.81, 0.83), "sam": (0.85, 0.87)},   # change -2 / +1: flips
       3: {"vanilla": (0.86, 0.88), "sam": (0.86, 0.88)},   # change +5 / +1
       8: {"vanilla": (0.84, 0.86), "sam": (0.86, 0.86)},   # no change: step 07 is not in the grid
       10: {"vanilla": (0.70, 0.72), "sam": (0.75, 0.75)},  # no change: step 09 is not in the grid
       11: {"vanilla": (0.85, 0.89), "sam": (0.85, 0.85)}}  # change from 08: +2 / -1: flips
LABEL = {0: "00_resnet50", 1: "01_stage_ratio", 2: "02_patchify", 3: "03_depthwise", 8: "08_kernel7",
         10: "10_kernel11", 11: "11_gelu"}


def results() -> dict:
    """A made-up aggregate: lambda_max is 10 x accuracy with AdamW, PGD accuracy half the test accuracy."""
    cells = {}
    for step, by_setting in ACC.items():
        for setting, accs in by_setting.items():
            for seed, acc in enumerate(accs):
                cells[f"{step}{setting}{seed}"] = {
                    "labels": {"seed": str(seed), "model": LABEL[step], "setting": setting},
                    "metrics": {"test_accuracy": acc, "lambda_max": 10.0 * acc if setting == "vanilla" else acc,
                                "pgd_linf_accuracy@0.01": acc / 2, "params": 1.5e6}}
    return {"cells": cells}


def test_each_step_is_compared_with_the_step_it_modifies_paired_by_seed() -> None:
    steps = TABLES["roadmap"].build(results())["steps"]
    gelu = steps["11"]
    assert gelu["base"] == "08" and STEPS[11].base == 8 and gelu["params"] == 1_500_000
    assert gelu["change_vanilla"]["mean"] == pytest.approx(((0.85 - 0.84) + (0.89 - 0.86)) / 2)
    assert gelu["change_sam"]["mean"] == pytest.approx(((0.85 - 0.86) + (0.85 - 0.86)) / 2)
    assert gelu["test_accuracy"]["sam_minus_vanilla"]["mean"] == pytest.approx((0.0 - 0.04) / 2)
    assert gelu["lambda_max"]["vanilla"]["mean"] == pytest.approx(8.7)
    assert gelu["pgd_linf_accuracy@0.01"]["sam"]["mean"] == pytest.approx(0.425)
    assert "change_vanilla" not in steps["08"] and "change_vanilla" not in steps["10"]
    assert "change_vanilla" not in steps["00"]


def test_the_tests_over_steps_match_an_independent_computation() -> None:
    t = TABLES["roadmap"].build(results())["tests"]
    steps = sorted(ACC)
    gains = [sum(ACC[s]["sam"]) / 2 - sum(ACC[s]["vanilla"]) / 2 for s in steps]
    assert t["steps"] == 7 and t["sam_gain"]["mean"] == pytest.approx(sum(gains) / 7)
    assert t["sam_gain"]["t_p"] == pytest.approx(stats.ttest_1samp(gains, 0).pvalue)
    assert t["gain_trend"]["spearman"] == pytest.approx(stats.spearmanr(steps, gains).statistic)
    help_ = t["same_steps_help"]
    assert help_["n"] == 4 and help_["sign_flips"] == [2, 11]
    assert help_["spearman"] == pytest.approx(stats.spearmanr([3, -2, 5, 2], [2, 1, 1, -1]).statistic)
    lam = [sum(ACC[s]["sam"]) / 2 - 10 * sum(ACC[s]["vanilla"]) / 2 for s in steps]
    assert t["lambda_max"]["sam_gain"]["mean"] == pytest.approx(sum(lam) / 7)
    assert t["lambda_max"]["clean_ranks_it"]["spearman"] == pytest.approx(1.0)  # lambda_max = 10 x accuracy
    pgd = [g / 2 for g in gains]
    assert t["pgd_linf_accuracy@0.01"]["sam_gain"]["mean"] == pytest.approx(sum(pgd) / 7)


def test_a_paired_difference_without_spread_has_no_p_and_the_json_stays_valid() -> None:
    table = TABLES["roadmap"].build(results())
    assert table["steps"]["03"]["test_accuracy"]["paired_t_p"] is None  # SAM = AdamW on both seeds: t is NaN
    vanilla, sam = [0.01, 0.04], [0.01 + 0.05, 0.04 + 0.05]  # +5 points twice, but for rounding
    assert roadmap_table.sam_vs_adamw(vanilla, sam)["paired_t_p"] is None
    assert table["steps"]["00"]["test_accuracy"]["paired_t_p"] == pytest.approx(
        stats.ttest_rel((0.81, 0.85), (0.80, 0.82)).pvalue)
    json.dumps(table, allow_nan=False)  # NaN is not JSON: browsers and jq refuse the file
    assert figures._t_p(table["steps"]["03"]["test_accuracy"]) == "n/a (no spread)"
    assert figures._t_p({"paired_t_p": None, "n": 1}) == "n/a (n = 1)"


def test_the_docs_view_shows_each_step_and_the_tests(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "roadmap.json").write_text(json.dumps(
        {"cells_done": 16, "cells_total": 64, **TABLES["roadmap"].build(results())}))
    cell = tmp_path / "cells" / "a"
    (cell / "run" / "eval").mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps({"summary": {"device": "cpu", "torch": "2"}}))
    (cell / "run" / "eval" / "corruptions.json").write_text(json.dumps({"n": 500, "table": "28px"}))
    (cell / "run" / "eval" / "attack_pgd_linf.json").write_text(json.dumps({"n": 400, "steps": 10,
                                                                           "alpha": "2.5*eps/steps"}))
    text = figures.RENDERERS["roadmap_cpu:roadmap"](tmp_path)
    # GELU: AdamW 87.0 +- 2.8, SAM 85.0, gain -2.0 +- 2.8, change from kernel 7: +2.0 +- 1.4 / -1.0 +- 0.0
    assert ("| 11 ReLU -> GELU (from kernel 7) | 1.50M | 2 | 87.0 +- 2.8 | 85.0 +- 0.0 | -2.0 +- 2.8 | +2.0 +- 1.4 "
            "| -1.0 +- 0.0 |") in text
    assert "| 00 ResNet-50 | 1.50M | 2 | 81.0 +- 1.4 | 83.0 +- 2.8 | +2.0 +- 1.4 | - | - |" in text
    assert "16 of 64 cells done" in text and "one-sample t p =" in text and "PGD-10 eps 0.01 (%)" in text
    assert "on the first 500 test images" in text and "on the first 400." in text


def test_a_p_value_below_a_thousandth_reads_as_a_bound() -> None:
    """A perfect rank correlation has p = 0 in scipy: the docs must say "p < 0.001", never "p = 0"."""
    assert figures._p(0.0) == "p < 0.001"
    assert figures._p(4.2e-7) == "p < 0.001"
    assert figures._p(0.00369) == "p = 0.00369"
    assert figures._p(0.001) == "p = 0.001"
