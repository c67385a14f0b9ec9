"""The claims' rule: each verdict on results built to decide it (the statistics: tests/test_stats.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sharpvision.experiments import claims


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
    # the gains are paired by seed (seed s of SAM minus seed s of vanilla), in points, and the two families'
    # gains of one seed are a pair too: a paired t over seeds, with its interval
    first = got["tests"][0]
    assert first["a"]["mean"] == pytest.approx(10.33333, abs=1e-4) and first["unit"] == "points"
    assert first["test"] == "paired t" and first["n"] == 3
    assert first["effect"] == pytest.approx(10.33333 - 5.33333, abs=1e-4)
    assert first["ci"][0] <= first["effect"] <= first["ci"][1]
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
    assert got["tests"][0]["a"]["mean"] == pytest.approx(82.0)


def test_noise_gain_by_level() -> None:
    rows = {("vit", "vanilla", "0.0"): [0.80, 0.81, 0.80], ("vit", "sam", "0.0"): [0.80, 0.81, 0.81],
            ("vit", "vanilla", "0.4"): [0.60, 0.62, 0.61], ("vit", "sam", "0.4"): [0.70, 0.73, 0.71]}
    got = _claim(_results(rows, axes=("model", "setting", "data.label_noise")), "noise_gain")
    assert got["verdict"] == "holds" and got["tests"][0]["compare"] == "vit: gain at noise 0.4 > gain at 0.0"


def test_every_claim_is_judged_with_the_rule() -> None:
    out = claims.evaluate(_results({("vit", "sam"): [0.8, 0.8]}))
    assert out["rule"] == claims.RULE and out["alpha"] == 0.05
    assert [c["id"] for c in out["claims"]] == [c.id for c in claims.CLAIMS]
    assert all(c["verdict"] in ("holds", "contradicted", "inconclusive", "not measured", "undecided")
               for c in out["claims"])


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
    assert bigger["tests"][0]["a"]["mean"] == pytest.approx(6.66667, abs=1e-4)
    assert bigger["tests"][0]["b"]["mean"] == pytest.approx(2.33333, abs=1e-4)
    assert bigger["tests"][0]["test"] == "paired t"  # both gains of a seed come from the same two runs
    smaller = _claim(results([0.86, 0.87, 0.86], [0.61, 0.62, 0.61]), "corruption_gain")
    assert smaller["verdict"] == "contradicted"


def test_a_singular_ntk_is_not_measured_and_claims_json_is_strict() -> None:
    """kappa = inf (a singular NTK) is not a measurement: the test and the claim say "not measured", never
    "inconclusive" from an infinity, and claims.json holds no NaN or Infinity. kappa compares as a log ratio."""
    inf = math.inf
    out = claims.evaluate(_results({("resnet", "vanilla"): [1e5, 2e5, 1.5e5], ("vit", "vanilla"): [2e7, 3e7, 2.5e7],
                                    ("mixer", "vanilla"): [inf, inf, inf]}, metric="ntk_kappa_at_init"))
    json.dumps(out, allow_nan=False)
    result = next(c for c in out["claims"] if c["id"] == "ntk_order")
    by_name = {t["compare"]: t for t in result["tests"]}
    measured = by_name["vit > resnet"]
    assert measured["verdict"] == "holds" and measured["unit"] == "log ratio"
    assert measured["effect"] == pytest.approx(np.mean(np.log([2e7 / 1e5, 3e7 / 2e5, 2.5e7 / 1.5e5])))
    singular = by_name["mixer > vit"]
    assert singular["verdict"] == "not measured" and "not finite" in singular["why"] and singular["p"] is None
    assert singular["a"] == {"mean": None, "std": None, "n": 3}
    assert result["verdict"] == "not measured"


def test_null_metrics_from_strict_results_read_as_not_finite() -> None:
    rows = _results({("resnet", "vanilla"): [1e5, 2e5], ("vit", "vanilla"): [2e7, 3e7], ("mixer", "vanilla"):
                     [1.0, 1.0]}, metric="ntk_kappa_at_init")
    for cell in rows["cells"].values():
        if cell["labels"]["model"] == "mixer":
            cell["metrics"]["ntk_kappa_at_init"] = None  # results.json writes inf as null
    assert _claim(rows, "ntk_order")["verdict"] == "not measured"


def test_lambda_max_drop_is_a_log_ratio() -> None:
    """SAM's drop as -log(SAM / AdamW): a run whose lambda_max rises does not dominate (1 - SAM/AdamW would give
    -2.5 for a 3.5x rise and at most +1 for any drop)."""
    rows = {("vit", "vanilla"): [100.0, 120.0, 90.0], ("vit", "sam"): [10.0, 15.0, 10.0],
            ("resnet", "vanilla"): [50.0, 60.0, 40.0], ("resnet", "sam"): [40.0, 45.0, 35.0],
            ("mixer", "vanilla"): [1.0, 1.0, 1.0], ("mixer", "sam"): [3.5, 3.0, 4.0]}
    got = _claim(_results(rows, metric="lambda_max"), "lambda_max_by_family")
    vit = got["tests"][0]
    assert vit["compare"] == "drop vit > drop resnet" and vit["unit"] == "log ratio" and vit["verdict"] == "holds"
    assert vit["a"]["mean"] == pytest.approx(np.mean(-np.log([0.1, 15 / 120, 10 / 90])))
    assert got["tests"][1]["verdict"] == "contradicted" and got["verdict"] == "contradicted"


def test_groups_with_no_shared_seed_fall_back_to_welch() -> None:
    rows = _results({("resnet", "vanilla"): [0.80, 0.81, 0.82]})
    for key, value in {"1x": [0.84, 0.85, 0.86]}.items():
        del key
        for i, v in enumerate(value):
            lab = {"model": "vit", "setting": "sam", "seed": str(10 + i)}
            rows["cells"][f"vit-sam-{i}"] = {"labels": lab, "metrics": {"test_accuracy": v}}
    rows["axes"]["model"].append("vit")
    rows["axes"]["setting"].append("sam")
    test = _claim(rows, "vit_sam_vs_resnet")["tests"][0]
    assert test["test"] == "welch" and test["effect"] == pytest.approx(4.0)


def test_a_group_at_chance_leaves_the_claim_undecided() -> None:
    """paper-tiny's ResNet at 10.9% (chance is 10%) cannot lose to anything: the claim is not decided."""
    rows = {("resnet", "vanilla"): [0.109, 0.112], ("vit", "sam"): [0.30, 0.33]}
    got = _claim(_results(rows), "vit_sam_vs_resnet")
    assert got["verdict"] == "undecided" and "model=resnet" in got["why"] and "chance 10%" in got["why"]
    cells = _results(rows)
    for cell in cells["cells"].values():
        cell["metrics"]["num_classes"] = 3  # at 3 classes, 11% is far below chance: still undecided, by its rule
    assert _claim(cells, "vit_sam_vs_resnet")["verdict"] == "undecided"
    learnt = {("resnet", "vanilla"): [0.60, 0.62], ("vit", "sam"): [0.70, 0.73]}
    assert _claim(_results(learnt), "vit_sam_vs_resnet")["verdict"] != "undecided"


def test_a_smoke_suite_says_so_in_claims_json() -> None:
    rows = _results({("vit", "sam"): [0.8, 0.8]})
    assert claims.evaluate(rows)["smoke"] is False
    assert claims.evaluate(rows | {"smoke": True})["smoke"] is True
