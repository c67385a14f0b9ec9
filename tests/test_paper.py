"""The papers' numbers live in one table (sharpvision.paper) with their source; the claims, their per-comparison
paper values and the report's reference column are all built from it."""

import pytest

from sharpvision import paper
from sharpvision.experiments.claims import CLAIMS, evaluate
from sharpvision.experiments.ladder import LADDER


def test_every_number_names_its_table_and_row_once() -> None:
    keys = [(n.quantity, n.model) for n in paper.NUMBERS]
    assert len(keys) == len(set(keys))
    for n in paper.NUMBERS:
        assert n.source.startswith(("Chen et al. Table", "Foret et al. Sec.")) and ", row " in n.source, n


def test_the_short_values_are_the_tables_numbers() -> None:
    assert paper.gains("mixer", "vit") == "+11.0 vs +5.3"
    assert paper.drops("vit", "resnet") == "97% vs 77%"  # 1 - 20.9 / 738.8 and 1 - 42.0 / 179.8
    assert paper.top1("vit", "sam", "resnet", "vanilla") == "79.9 vs 78.5"
    assert paper.kappas("mixer", "vit") == "14468 vs 6207"
    assert paper.corrupted_vs_clean("vit") == "+9.9 vs +5.3"
    assert paper.noise_gain() == "+51.7 at 80%"  # 77.9 - 26.2
    assert paper.reference_row("vit", "sam") == "ViT-B/16: top-1 79.9, lambda_max 20.9, NTK kappa 6206.8"
    assert paper.reference_row("convnext", "sam") == ""
    with pytest.raises(KeyError, match="no lambda_max of ViT-S/16"):
        paper.value("lambda_max", "ViT-S/16")


def test_every_claim_quotes_the_table_and_a_changed_number_reaches_it(monkeypatch) -> None:
    texts = set(paper.TEXT.values())
    assert all(c.paper in texts or c.paper == "as above" for c in (*CLAIMS, *LADDER))
    changed = tuple(n if (n.quantity, n.model) != ("top-1 gain", "Mixer-B/16") else
                    paper.Number(n.quantity, n.model, 12.5, n.source) for n in paper.NUMBERS)
    monkeypatch.setattr(paper, "NUMBERS", changed)
    assert paper.gains("mixer", "vit") == "+12.5 vs +5.3"


def _cell(model: str, setting: str, seed: int, acc: float) -> dict:
    return {"labels": {"seed": str(seed), "model": model, "setting": setting}, "metrics": {"test_accuracy": acc}}


def test_claims_json_carries_the_paper_side_of_each_comparison() -> None:
    accs = {("mixer", "vanilla"): 0.6, ("mixer", "sam"): 0.7, ("vit", "vanilla"): 0.62, ("vit", "sam"): 0.66,
            ("resnet", "vanilla"): 0.7, ("resnet", "sam"): 0.71}
    cells = {f"{m}{s}{seed}": _cell(m, s, seed, a + 0.01 * seed * (seed % 2))
             for (m, s), a in accs.items() for seed in range(3)}
    results = {"cells": cells, "axes": {"seed": ["0", "1", "2"], "model": ["vit", "mixer", "resnet"],
                                        "setting": ["vanilla", "sam"]}}
    claims = {c["id"]: c for c in evaluate(results)["claims"]}
    tests = claims["gain_by_family"]["tests"]
    assert [t["paper"] for t in tests] == ["+11.0 vs +5.3", "+5.3 vs +0.8"]
    assert claims["vit_sam_vs_resnet"]["tests"][0]["paper"] == "79.9 vs 78.5"
    assert claims["gain_by_family"]["paper"] == paper.TEXT["gain_by_family"]
