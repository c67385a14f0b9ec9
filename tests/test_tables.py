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
    with pytest.raises(SuiteError, match="tables nope unknown; choose from label_noise"):
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
    assert set(TABLES) >= {"label_noise", "variants"}
    with pytest.raises(SuiteError, match="table nope unknown"):
        write(tmp_path, ["nope"])
