"""The roadmap grid's table (benchmarks/roadmap_table.py): each step compared with the step it modifies, SAM's gain
paired by seed, and the tests over steps fixed before the grid ran, checked against hand-computed values."""

import importlib
import json
from pathlib import Path

import pytest
from scipy import stats
from test_docs import figures

ROOT = Path(__file__).parents[1]


@pytest.fixture()
def roadmap_table(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("roadmap_table")


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


def rows(roadmap_table) -> dict:
    cells = roadmap_table.by_step(results())
    return {s: roadmap_table.step_row(cells[s], cells.get(roadmap_table.STEPS[s].base) if s else None,
                                      ("lambda_max",)) for s in ACC}


def results() -> dict:
    cells = {}
    for step, by_setting in ACC.items():
        for setting, accs in by_setting.items():
            for seed, acc in enumerate(accs):
                cells[f"{step}{setting}{seed}"] = {
                    "labels": {"seed": str(seed), "model": LABEL[step], "setting": setting},
                    "metrics": {"test_accuracy": acc, "lambda_max": 10.0 * acc if setting == "vanilla" else acc}}
    return {"cells": cells}


def test_each_step_is_compared_with_the_step_it_modifies_paired_by_seed(roadmap_table) -> None:
    cells = roadmap_table.by_step(results())
    gelu = roadmap_table.step_row(cells[11], cells[8], ("lambda_max",))
    assert gelu["change_vanilla"]["mean"] == pytest.approx(((0.85 - 0.84) + (0.89 - 0.86)) / 2)
    assert gelu["change_sam"]["mean"] == pytest.approx(((0.85 - 0.86) + (0.85 - 0.86)) / 2)
    assert gelu["test_accuracy"]["sam_minus_vanilla"]["mean"] == pytest.approx((0.0 - 0.04) / 2)
    assert gelu["lambda_max"]["vanilla"]["mean"] == pytest.approx(8.7)
    assert roadmap_table.STEPS[11].base == 8  # the rule the script reads


def test_the_tests_over_steps_match_an_independent_computation(roadmap_table) -> None:
    r = rows(roadmap_table)
    assert "change_vanilla" not in r[8] and "change_vanilla" not in r[10] and "change_vanilla" not in r[0]
    t = roadmap_table.tests(r, ("lambda_max",))
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


def test_the_docs_view_shows_each_step_and_the_tests(roadmap_table, tmp_path: Path) -> None:
    r = rows(roadmap_table)
    table = {f"{s:02d}": {"step": roadmap_table.STEPS[s].name, "change": roadmap_table.STEPS[s].change,
                          "params": 1.5e6, **r[s]} for s in sorted(ACC)}
    result = {"device": "cpu", "versions": {"torch": "2"}, "command": "python benchmarks/roadmap_table.py x",
              "cells_done": 16, "cells_total": 64, "table": table, "tests": roadmap_table.tests(r, ("lambda_max",)),
              "settings": {"corruption_subset": 500, "attack_subset": 500, "eps": "0.01,0.03", "steps": 10,
                           "alpha": "2.5*eps/steps", "table": "28px"}}
    path = tmp_path / "roadmap_table_cpu.json"
    path.write_text(json.dumps(result))
    text = figures.RENDERERS["roadmap_table"](path)
    # GELU: AdamW 87.0 +- 2.8, SAM 85.0, gain -2.0 +- 2.8, change from kernel 7: +2.0 +- 1.4 / -1.0 +- 0.0
    assert ("| 11 ReLU -> GELU (from kernel 7) | 1.50M | 2 | 87.0 +- 2.8 | 85.0 +- 0.0 | -2.0 +- 2.8 | +2.0 +- 1.4 "
            "| -1.0 +- 0.0 |") in text
    assert "| 00 ResNet-50 | 1.50M | 2 | 81.0 +- 1.4 | 83.0 +- 2.8 | +2.0 +- 1.4 | - | - |" in text
    assert "16 of 64 cells done" in text and "one-sample t p =" in text


def test_a_p_value_below_a_thousandth_reads_as_a_bound() -> None:
    """A perfect rank correlation has p = 0 in scipy: the docs must say "p < 0.001", never "p = 0"."""
    assert figures._p(0.0) == "p < 0.001"
    assert figures._p(4.2e-7) == "p < 0.001"
    assert figures._p(0.00369) == "p = 0.00369"
    assert figures._p(0.001) == "p = 0.001"


def test_a_paired_difference_without_spread_has_no_p_and_the_json_stays_valid(roadmap_table) -> None:
    r = rows(roadmap_table)
    assert r[3]["test_accuracy"]["paired_t_p"] is None  # SAM = AdamW on both seeds: scipy's t is NaN
    common = importlib.import_module("common")
    assert common.paired_t_p([0.01 + 0.05, 0.04 + 0.05], [0.01, 0.04]) is None  # +5 points twice, but for rounding
    assert r[0]["test_accuracy"]["paired_t_p"] == pytest.approx(stats.ttest_rel((0.81, 0.85), (0.80, 0.82)).pvalue)
    json.dumps(r, allow_nan=False)  # NaN is not JSON: browsers and jq refuse the file
    assert figures._t_p(r[3]["test_accuracy"]) == "n/a (no spread)"
    assert figures._t_p({"paired_t_p": None, "n": 1}) == "n/a (n = 1)"
