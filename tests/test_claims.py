"""The claims' rule: Welch's test against a hand computation, and each verdict on results built to decide it."""

from __future__ import annotations

import math

import pytest

from sharpvision.experiments import claims


def _t_two_sided_p(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's t with ``df`` degrees of freedom, by Simpson's rule on its density."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    n, hi = 20000, abs(t)
    h = hi / n
    inner = density(0) + density(hi) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return 1 - 2 * inner * h / 3


def test_welch_matches_the_textbook_formula() -> None:
    a, b = [0.81, 0.83, 0.82, 0.85], [0.78, 0.80, 0.77]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    t = (ma - mb) / math.sqrt(se2)
    df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    got_t, got_p = claims.welch(a, b)
    assert got_t == pytest.approx(t, rel=1e-12)
    assert got_p == pytest.approx(_t_two_sided_p(t, df), abs=1e-6)


def test_welch_without_spread() -> None:
    assert claims.welch([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)
    t, p = claims.welch([2.0, 2.0], [1.0, 1.0])
    assert t == math.inf and p == 0.0


def _results(rows: dict[tuple[str, ...], list[float]], axes: tuple[str, ...] = ("model", "setting"),
             metric: str = "test_accuracy") -> dict:
    """results.json's shape: one cell per (labels, seed) with ``metric``."""
    cells, labels_of_axis = {}, {a: [] for a in (*axes, "seed")}
    for labels, values in rows.items():
        for seed, value in enumerate(values):
            lab = dict(zip(axes, labels)) | {"seed": str(seed)}
            for a, v in lab.items():
                if v not in labels_of_axis[a]:
                    labels_of_axis[a].append(v)
            cells[",".join(f"{a}={v}" for a, v in lab.items())] = {"labels": lab, "metrics": {metric: value}}
    return {"suite": "t", "axes": labels_of_axis, "cells": cells}


def _claim(result: dict, claim_id: str) -> dict:
    return next(c for c in claims.evaluate(result)["claims"] if c["id"] == claim_id)


def test_gain_order_holds_contradicts_or_stays_open() -> None:
    clear = {("resnet", "vanilla"): [0.80, 0.81, 0.80], ("resnet", "sam"): [0.80, 0.81, 0.81],
             ("vit", "vanilla"): [0.70, 0.71, 0.70], ("vit", "sam"): [0.75, 0.76, 0.76],
             ("mixer", "vanilla"): [0.60, 0.61, 0.60], ("mixer", "sam"): [0.70, 0.71, 0.71]}
    got = _claim(_results(clear), "gain_by_family")
    assert got["verdict"] == "holds" and [t["verdict"] for t in got["tests"]] == ["holds", "holds"]
    # the gains are paired by seed: seed s of SAM minus seed s of vanilla
    assert got["tests"][0]["a"]["mean"] == pytest.approx(0.1033333, abs=1e-6)
    reversed_ = clear | {("mixer", "sam"): [0.60, 0.61, 0.60]}  # Mixer gains nothing: below ViT's +5
    assert _claim(_results(reversed_), "gain_by_family")["verdict"] == "contradicted"
    noisy = clear | {("mixer", "sam"): [0.70, 0.61, 0.66]}
    assert _claim(_results(noisy), "gain_by_family")["verdict"] == "inconclusive"


def test_one_seed_is_inconclusive_and_missing_runs_are_not_measured() -> None:
    one = {(m, s): [0.8] for m in ("resnet", "vit", "mixer") for s in ("vanilla", "sam")}
    got = _claim(_results(one), "gain_by_family")
    assert got["verdict"] == "inconclusive" and got["tests"][0]["why"] == "fewer than 2 seeds"
    no_mixer = {k: v for k, v in one.items() if k[0] != "mixer"}
    got = _claim(_results(no_mixer), "gain_by_family")
    assert got["verdict"] == "not measured" and "model=mixer" in got["why"]
    got = _claim(_results(one), "corruption_gain")  # no cell was evaluated on the corruptions
    assert got["verdict"] == "not measured" and "mean_corruption_accuracy" in got["why"]


def test_matches_or_beats() -> None:
    base = {("resnet", "vanilla"): [0.80, 0.81, 0.82]}
    assert _claim(_results(base | {("vit", "sam"): [0.81, 0.82, 0.83]}), "vit_sam_vs_resnet")["verdict"] == "holds"
    assert _claim(_results(base | {("vit", "sam"): [0.80, 0.79, 0.82]}),
                  "vit_sam_vs_resnet")["verdict"] == "inconclusive"
    assert _claim(_results(base | {("vit", "sam"): [0.70, 0.71, 0.70]}),
                  "vit_sam_vs_resnet")["verdict"] == "contradicted"


def test_unnamed_axes_are_pinned_to_their_reference() -> None:
    """Table 2 claims read the largest data fraction and the smallest noise, never a mix of cells."""
    rows = {("vit", "sam", "1.0", "0.0"): [0.81, 0.82, 0.83], ("resnet", "vanilla", "1.0", "0.0"): [0.80, 0.81, 0.82],
            ("vit", "sam", "0.25", "0.0"): [0.10, 0.11, 0.12], ("vit", "sam", "1.0", "0.4"): [0.1, 0.1, 0.1]}
    result = _results(rows, axes=("model", "setting", "data.fraction", "data.label_noise"))
    got = _claim(result, "vit_sam_vs_resnet")
    assert got["tests"][0]["a"]["mean"] == pytest.approx(0.82)


def test_noise_gain_by_level() -> None:
    rows = {("vit", "vanilla", "0.0"): [0.80, 0.81, 0.80], ("vit", "sam", "0.0"): [0.80, 0.81, 0.81],
            ("vit", "vanilla", "0.4"): [0.60, 0.62, 0.61], ("vit", "sam", "0.4"): [0.70, 0.73, 0.71]}
    got = _claim(_results(rows, axes=("model", "setting", "data.label_noise")), "noise_gain")
    assert got["verdict"] == "holds" and got["tests"][0]["compare"] == "vit: gain at noise 0.4 > gain at 0.0"


def test_every_claim_is_judged_with_the_rule() -> None:
    out = claims.evaluate(_results({("vit", "sam"): [0.8, 0.8]}))
    assert out["rule"] == claims.RULE and out["alpha"] == 0.05
    assert [c["id"] for c in out["claims"]] == [c.id for c in claims.CLAIMS]
    assert all(c["verdict"] in ("holds", "contradicted", "inconclusive", "not measured") for c in out["claims"])


def test_corruption_gain_compares_the_corrupted_gain_with_the_clean_gain_on_the_same_images() -> None:
    """Per seed: SAM's gain in mean corruption accuracy against its gain in clean accuracy, both from the cells'
    corruption evaluation (not the summary's test accuracy, which may be on other images)."""
    def results(clean_sam: list[float], corrupt_sam: list[float]) -> dict:
        out = _results({(m, s): [0.0] * 3 for m in ("vit", "mixer") for s in ("vanilla", "sam")})
        for cell in out["cells"].values():
            sam, seed = cell["labels"]["setting"] == "sam", int(cell["labels"]["seed"])
            cell["metrics"] = {"corruption_clean_accuracy": clean_sam[seed] if sam else 0.80,
                               "mean_corruption_accuracy": corrupt_sam[seed] if sam else 0.60,
                               "test_accuracy": 0.5}
        return out
    bigger = _claim(results([0.82, 0.83, 0.82], [0.66, 0.67, 0.67]), "corruption_gain")  # +2.3 clean, +6.7 corrupt
    assert bigger["verdict"] == "holds" and [t["compare"] for t in bigger["tests"]] == [
        "vit: gain corrupted > gain clean", "mixer: gain corrupted > gain clean"]
    assert bigger["tests"][0]["a"]["mean"] == pytest.approx(0.0666667, abs=1e-6)
    assert bigger["tests"][0]["b"]["mean"] == pytest.approx(0.0233333, abs=1e-6)
    smaller = _claim(results([0.86, 0.87, 0.86], [0.61, 0.62, 0.61]), "corruption_gain")
    assert smaller["verdict"] == "contradicted"


def test_a_singular_ntk_is_inconclusive_not_a_crash() -> None:
    """kappa = inf (a singular NTK: Mixers at n = 128) over several seeds: the standard library's stdev raises on
    it; the summary says nan and the comparison says why it is not tested."""
    inf = math.inf
    result = _claim(_results({("resnet", "vanilla"): [1e5, 2e5, 1.5e5], ("vit", "vanilla"): [2e7, 3e7, 2.5e7],
                              ("mixer", "vanilla"): [inf, inf, inf]}, metric="ntk_kappa_at_init"), "ntk_order")
    by_name = {t["compare"]: t for t in result["tests"]}
    assert by_name["vit > resnet"]["verdict"] == "holds"
    singular = by_name["mixer > vit"]
    assert singular["verdict"] == "inconclusive" and "not finite" in singular["why"] and singular["p"] is None
    assert singular["a"]["mean"] == inf and math.isnan(singular["a"]["std"]) and singular["a"]["n"] == 3
    assert result["verdict"] == "inconclusive"


def test_aggregate_keeps_infinite_metrics() -> None:
    from sharpvision.experiments.aggregate import _mean_std
    assert _mean_std([math.inf, math.inf])["mean"] == math.inf and math.isnan(_mean_std([math.inf, 1.0])["std"])
    assert _mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "n": 2}
