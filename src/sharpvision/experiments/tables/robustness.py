"""Robustness with and without SAM: the groups of cells that ``sharpvision eval --corruptions`` (and MNIST-C, FGSM
or PGD) has evaluated, AdamW beside SAM, and SAM's gain in each figure (the difference of the two groups' means; the
claim that tests it, paired by seed, is the suite's ``corruption_gain``). Accuracies as fractions."""

from __future__ import annotations

from typing import Any

from sharpvision.experiments.aggregate import attack_metric
from sharpvision.experiments.tables import table

FIGURES = ("corruption_clean_accuracy", "mean_corruption_accuracy", "mnist_c_mean_accuracy")


@table("robustness", "per group of cells evaluated under corruption (model and the other labels but setting): "
                     "clean and mean corruption accuracy on the same test images, MNIST-C's mean, robust accuracy per "
                     "attack and eps, and test accuracy, mean +- std over seeds with AdamW and with SAM, and SAM's "
                     "gain in each (SAM's mean minus AdamW's). Accuracies as fractions")
def robustness(results: dict[str, Any]) -> dict[str, Any]:
    pairs: dict[tuple[tuple[str, str], ...], dict[str, dict[str, Any]]] = {}
    for group in results["groups"].values():
        labels = dict(group["labels"])
        setting = labels.pop("setting", "")
        if setting in ("vanilla", "sam") and "corruption_clean_accuracy" in group["metrics"]:
            pairs.setdefault(tuple(labels.items()), {})[setting] = group
    rows = []
    for labels, pair in pairs.items():
        if len(pair) < 2:
            continue
        shared = set(pair["vanilla"]["metrics"]) & set(pair["sam"]["metrics"])
        names = [m for m in (*FIGURES, *sorted((m for m in shared if attack_metric(m)), key=attack_metric),
                             "test_accuracy") if m in shared]
        side = {s: {"n": pair[s]["n"], **{m: pair[s]["metrics"][m] for m in names}} for s in ("vanilla", "sam")}
        gain = {m: side["sam"][m]["mean"] - side["vanilla"][m]["mean"] for m in names
                if side["sam"][m]["mean"] is not None and side["vanilla"][m]["mean"] is not None}
        rows.append({"labels": dict(labels), **side, "sam_minus_vanilla": gain})
    return {"unit": "fraction", "rows": rows}
