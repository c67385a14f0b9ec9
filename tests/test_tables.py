"""Suite tables (sharpvision.experiments.tables): a suite names them, an unknown name is refused when the suite
loads, and ``write`` puts each into DIR/tables/NAME.json from the finished cells."""

import json
from pathlib import Path

import pytest
import yaml

from sharpvision.experiments import SuiteError, load_suite
from sharpvision.experiments.tables import TABLES, write

SUITE = {"name": "t", "recipe": "tiny.yaml", "axes": {"seed": [0, 1], "model": {"vit": {}},
                                                       "setting": {"vanilla": {}, "sam": {"optim.sam": True}}}}


def test_a_suite_names_its_tables_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE | {"tables": ["label_noise"]}))
    assert load_suite(tmp_path / "suite.yaml").tables == ("label_noise",)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(SUITE | {"tables": ["nope"]}))
    with pytest.raises(SuiteError, match="tables nope unknown; choose from "):
        load_suite(tmp_path / "bad.yaml")


def test_write_puts_each_table_beside_the_cells(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE | {"tables": ["variants"]}))
    for seed, setting, acc in ((0, "vanilla", 0.5), (0, "sam", 0.6), (1, "vanilla", 0.7), (1, "sam", 0.7)):
        cell = load_suite(tmp_path / "suite.yaml").cells()
        folder = next(c.folder for c in cell if dict(c.labels) == {"seed": str(seed), "model": "vit",
                                                                   "setting": setting})
        (tmp_path / "cells" / folder).mkdir(parents=True)
        (tmp_path / "cells" / folder / "result.json").write_text(json.dumps(
            {"summary": {"test_accuracy": acc}, "curve": []}))
    (path,) = write(tmp_path)
    data = json.loads(path.read_text())
    assert path == tmp_path / "tables" / "variants.json" and data["cells_done"] == 4
    sam = next(r for r in data["rows"] if r["setting"] == "sam")
    assert sam["gain"]["mean"] == pytest.approx(5.0) and sam["seeds"] == ["0", "1"]  # (+10 + 0) / 2 points
    assert set(TABLES) >= {"label_noise", "variants", "robustness", "roadmap"}
    with pytest.raises(SuiteError, match="table nope unknown"):
        write(tmp_path, ["nope"])


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_builds_strict_json_without_cells_and_a_shipped_suite_names_it(name: str) -> None:
    json.dumps(TABLES[name].build({"cells": {}, "groups": {}}), allow_nan=False)
    shipped = Path(__file__).parents[1] / "src" / "sharpvision" / "configs" / "suites"
    assert any(name in load_suite(p).tables for p in shipped.glob("*.yaml")), f"no shipped suite names {name}"


def test_the_robustness_table_pairs_adamw_with_sam_per_group() -> None:
    """Two models, one evaluated under corruption (both settings) and one not: only the first is a row; SAM's gain
    is SAM's mean minus AdamW's, figure by figure, over the figures both sides have."""
    def group(model: str, setting: str, n: int, **means: float) -> dict:
        return {"labels": {"model": model, "setting": setting}, "n": n,
                "metrics": {m: {"mean": v, "std": 0.01, "n": n} for m, v in means.items()}}
    groups = [group("vit", "vanilla", 3, corruption_clean_accuracy=0.78, mean_corruption_accuracy=0.62,
                    test_accuracy=0.80, **{"pgd_linf_accuracy@0.03": 0.13, "pgd_linf_accuracy@0.01": 0.51}),
              group("vit", "sam", 2, corruption_clean_accuracy=0.79, mean_corruption_accuracy=0.65,
                    test_accuracy=0.81, **{"pgd_linf_accuracy@0.01": 0.58}),
              group("resnet", "vanilla", 3, test_accuracy=0.85), group("resnet", "sam", 3, test_accuracy=0.86)]
    (row,) = TABLES["robustness"].build({"groups": {str(i): g for i, g in enumerate(groups)}})["rows"]
    assert row["labels"] == {"model": "vit"} and row["vanilla"]["n"] == 3 and row["sam"]["n"] == 2
    assert list(row["sam_minus_vanilla"]) == ["corruption_clean_accuracy", "mean_corruption_accuracy",
                                              "pgd_linf_accuracy@0.01", "test_accuracy"]  # eps 0.03: AdamW only
    assert row["sam_minus_vanilla"]["mean_corruption_accuracy"] == pytest.approx(0.65 - 0.62)
    assert row["sam_minus_vanilla"]["corruption_clean_accuracy"] == pytest.approx(0.79 - 0.78)
    assert row["sam"]["pgd_linf_accuracy@0.01"] == {"mean": 0.58, "std": 0.01, "n": 2}
