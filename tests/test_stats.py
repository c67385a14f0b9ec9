"""The one home of the project's statistics, checked against scipy and hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sp

from sharpvision import stats


def test_paired_matches_scipy_and_the_textbook_interval() -> None:
    a, b = [81.0, 83.5, 82.0, 85.0], [78.0, 80.5, 81.5, 80.0]
    got = stats.paired(a, b)
    d = np.subtract(a, b)
    ref = sp.ttest_rel(a, b)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-10) and got["t"] == pytest.approx(ref.statistic, rel=1e-10)
    half = sp.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert got["effect"] == pytest.approx(d.mean()) and got["n"] == 4 and got["test"] == "paired t"
    assert got["ci"] == pytest.approx([d.mean() - half, d.mean() + half])


def test_welch_matches_scipy_and_the_satterthwaite_interval() -> None:
    a, b = [0.81, 0.83, 0.82, 0.85], [0.78, 0.80, 0.77]
    got = stats.welch(a, b)
    ref = sp.ttest_ind(a, b, equal_var=False)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    half = sp.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert got["ci"] == pytest.approx([np.mean(a) - np.mean(b) - half, np.mean(a) - np.mean(b) + half])
    assert got["n"] == 3 and got["test"] == "welch"


def test_no_spread_and_too_few_values_give_no_p_and_strict_json() -> None:
    same = stats.paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["p"] == 1.0 and same["effect"] == 0 and same["ci"] == [0, 0]
    shifted = stats.paired([6.0, 7.0, 6.0], [1.0, 2.0, 1.0])  # the same difference in every pair: t is infinite
    assert shifted["p"] == 0.0 and shifted["ci"] == [5.0, 5.0]
    rounding = stats.one_sample([1e-17, -1e-17, 2e-17])  # a spread and a mean that are only float rounding
    assert rounding["p"] == 1.0 and rounding["effect"] == 0.0
    assert stats.one_sample([2.0])["p"] is None and stats.one_sample([2.0])["effect"] == 2.0
    assert stats.mean_std([1.0, math.inf]) == {"mean": None, "std": None, "n": 2}
    json.dumps([same, rounding, stats.welch([1.0], [math.nan])], allow_nan=False)  # raises on NaN / inf


def test_per_seed_slopes_and_the_crossing() -> None:
    x = [1.0, 2.0, 3.0]
    ys = {"0": [-3.0, -1.0, 1.0], "1": [-2.5, -0.5, 1.5], "2": [-3.2, -1.1, 0.7]}
    got = stats.per_seed_slopes(x, ys)
    slopes = [np.polyfit(x, y, 1)[0] for y in ys.values()]
    assert got["effect"] == pytest.approx(np.mean(slopes))
    assert got["p"] == pytest.approx(sp.ttest_1samp(slopes, 0).pvalue)
    # the mean line reaches zero where mean(y) + slope * (x - mean(x)) = 0
    level = np.mean([np.mean(y) for y in ys.values()])
    assert got["crossing_x"] == pytest.approx(2.0 - level / np.mean(slopes))
    flat = stats.per_seed_slopes(x, {"0": [1.0, 2.0, 1.0], "1": [2.0, 1.0, 2.0]})
    assert flat["crossing_x"] is None  # no significant trend: no crossing is claimed


@pytest.mark.parametrize(("p", "text"), [(None, "n/a"), (0.0004, "p < 0.001"), (0.0042, "p = 0.0042"),
                                         (0.031, "p = 0.031"), (0.2, "p = 0.2")])
def test_p_is_written_as_a_reader_expects(p: float | None, text: str) -> None:
    assert stats.fmt_p(p) == text


def test_verdict_rule() -> None:
    assert stats.verdict({"effect": 1.0, "p": 0.01}) == "holds"
    assert stats.verdict({"effect": -1.0, "p": 0.01}) == "contradicted"
    assert stats.verdict({"effect": 1.0, "p": 0.2}) == "inconclusive"
    assert stats.verdict({"effect": 1.0, "p": None}) == "inconclusive"
    assert stats.fmt_effect({"effect": 0.71, "ci": [-0.2, 1.62]}) == "+0.7 [-0.2, +1.6]"


def test_spearman_is_the_rank_correlation_and_none_where_undefined() -> None:
    got = stats.spearman([1, 2, 3, 4], [10.0, 30.0, 20.0, 40.0])
    assert got["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # ranks differ by 1 twice: sum d^2 = 2
    assert got["p"] == pytest.approx(sp.spearmanr([1, 2, 3, 4], [10, 30, 20, 40]).pvalue) and got["n"] == 4
    flat = stats.spearman([1, 2, 3], [5.0, 5.0, 5.0])
    assert flat["spearman"] is None and flat["p"] is None
    json.dumps(flat, allow_nan=False)
