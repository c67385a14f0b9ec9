"""The helpers every benchmark shares (benchmarks/common.py): one way to time (warm-up, interleaved repeats with the
order rotated, medians and ratios) and mean +- std and paired tests computed by sharpvision.stats in the shape the
committed results have."""

import importlib

import pytest
from scipy import stats


@pytest.fixture()
def common(monkeypatch):
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    return importlib.import_module("common")


def test_interleaved_warms_up_untimed_and_rotates_who_goes_first(common, monkeypatch) -> None:
    calls, clock = [], iter(range(1000))
    monkeypatch.setattr(common.time, "perf_counter", lambda: float(next(clock)))
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = common.interleaved(fns, repeats=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # the warm-up round, untimed
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t == 1.0 for v in times.values() for t in v)  # one clock tick between start and stop


def test_ratios_of_medians_and_medians_of_pair_ratios(common) -> None:
    times = {"base": [1.0, 1.0, 2.0], "sam": [2.0, 2.2, 3.0]}
    r = common.ratios(times, "base")
    assert r["sam"]["ratio_of_medians"] == pytest.approx(2.2)
    assert r["sam"]["median_of_pair_ratios"] == pytest.approx(2.0)  # median of 2.0, 2.2, 1.5
    assert common.medians(times) == {"base": 1.0, "sam": 2.2}


def test_paired_keeps_the_committed_shape_and_computes_through_stats(common) -> None:
    vanilla, sam = [0.80, 0.82, 0.81], [0.83, 0.84, 0.81]
    r = common.paired(vanilla, sam)
    assert set(r) == {"vanilla", "sam", "sam_minus_vanilla", "sam_better_seeds", "n", "paired_t_p"}
    assert r["paired_t_p"] == pytest.approx(stats.ttest_rel(sam, vanilla).pvalue)
    assert r["sam_minus_vanilla"]["mean"] == pytest.approx((0.03 + 0.02 + 0.0) / 3) and r["sam_better_seeds"] == 2
    assert common.mean_std([0.5]) == {"mean": 0.5, "std": 0.0}  # one seed: std 0, as the committed files have it
    assert common.paired_t_p([0.85, 0.86], [0.85, 0.86]) is None  # no spread: no p
    assert common.paired_t_p([0.06, 0.09], [0.01, 0.04]) is None  # +5 points twice, up to rounding



def test_the_recorded_command_reads_back_as_it_ran(common, monkeypatch) -> None:
    """An argument with spaces (a --notes) is quoted, so the command in a result can be pasted and run."""
    import shlex
    argv = ["benchmarks/hessian_peers.py", "--tols", "1e-2", "--notes", "one thread; beside a training run"]
    monkeypatch.setattr(common.sys, "argv", argv)
    assert shlex.split(common.provenance("cpu")["command"]) == ["python", *argv]
