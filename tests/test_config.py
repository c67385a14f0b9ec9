"""Recipes: every shipped file loads as written and names a registered model; bad fields are named; overrides parse
as YAML.

The recipe tests loop over the files in configs/ (``helpers.RECIPES``), so a new recipe is checked with no edit.
"""

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CONFIGS, RECIPES, TINY

from sharpvision import config, models
from sharpvision.config import ConfigError


def test_recipes_exist() -> None:
    names = {p.relative_to(CONFIGS).as_posix() for p in RECIPES}
    for fam in ("vit", "mixer", "resnet", "convnext"):
        assert f"fmnist/{fam}.yaml" in names and f"fmnist/{fam}_sam.yaml" in names
    assert "tiny.yaml" in names and "demo.yaml" in names


def assert_written(written: dict[str, Any], loaded: dict[str, Any], where: str = "") -> None:
    """Every field the file sets has that value after loading (fields it leaves out take defaults, not checked)."""
    for key, value in written.items():
        name = f"{where}{key}"
        assert key in loaded, f"{name}: in the file, not in the loaded recipe"
        got = loaded[key]
        if isinstance(value, dict) and isinstance(got, dict):
            assert_written(value, got, f"{name}.")
            continue
        if isinstance(got, float) and isinstance(value, str):
            value = float(value)  # PyYAML reads 5e-3 (no dot) as a string; the loader takes it as the number
        assert got == value, f"{name}: file says {value!r}, loaded {got!r}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_shipped_recipe_loads_as_written(path: Path) -> None:
    """The file, read on its own with yaml.safe_load, and the validated Config agree on every field it sets; the
    model is one of ours; no deprecated field name (loading it would warn)."""
    written = yaml.safe_load(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = config.load(path)
    assert isinstance(written.get("name"), str), "each recipe names its run"
    assert_written(written, cfg.to_dict())
    assert cfg.name == written["name"] and cfg.model.name == written["model"]["name"]
    assert cfg.model.name in models.list_models(), f"{cfg.model.name} is not in sharpvision.models' registry"
    assert path.read_text().startswith("#"), "each recipe states its source/command in a header comment"


@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent != CONFIGS],
                         ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_recipe_file_names_say_the_model_and_whether_sam_is_on(path: Path) -> None:
    """fmnist/vit_sam.yaml, paper/resnet50_sam.yaml: the name is the model's family or name, ``_sam`` iff SAM."""
    cfg = config.load(path)
    assert cfg.optim.sam is path.stem.endswith("_sam")
    assert path.stem.removesuffix("_sam") in (cfg.model.name, models.family(cfg.model.name))


def test_sam_pairs_differ_only_in_sam_and_name() -> None:
    for fam in ("vit", "mixer", "resnet", "convnext"):
        base = config.load(CONFIGS / "fmnist" / f"{fam}.yaml").to_dict()
        sam = config.load(CONFIGS / "fmnist" / f"{fam}_sam.yaml").to_dict()
        assert base["optim"].pop("sam") is False and sam["optim"].pop("sam") is True
        base["optim"].pop("rho"), sam["optim"].pop("rho")
        base.pop("name"), sam.pop("name")
        assert base == sam, fam


def test_defaults_and_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\noptim:\n  lr: 0.1\n")
    cfg = config.load(recipe, ["optim.rho=0.2", "optim.sam=true", "data.fraction=0.25", "optim.betas=[0.8, 0.9]",
                               "model.kwargs={depth: 2}", "optim.clip_grad_norm=null"])
    assert cfg.optim.lr == 0.1 and cfg.optim.rho == 0.2 and cfg.optim.sam is True
    assert cfg.data.fraction == 0.25 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.model.kwargs == {"depth": 2} and cfg.optim.clip_grad_norm is None
    assert cfg.schedule.epochs == 10  # untouched default
    assert isinstance(config.load(recipe, ["optim.lr=1"]).optim.lr, float)  # int accepted for a float field
    assert config.load(recipe, ["optim.lr=5e-3"]).optim.lr == 0.005  # PyYAML reads 5e-3 as a string


@pytest.mark.parametrize("overrides,culprit", [
    (["optim.rhoo=0.1"], "optim.rhoo: unknown field (did you mean optim.rho?)"),
    (["optim.rho=-0.1"], "optim.rho: -0.1 is out of range"),
    (["data.fraction=0"], "data.fraction: 0.0 is out of range"),
    (["data.fraction=1.5"], "data.fraction: 1.5 is out of range"),
    (["data.label_noise=1.0"], "data.label_noise: 1.0 is out of range"),
    (["optim.name=adam"], "optim.name: 'adam' is not one of"),
    (["data.dataset=cifar"], "data.dataset: 'cifar' is not one of"),
    (["schedule.epochs=ten"], "schedule.epochs: expected an integer, got 'ten'"),
    (["schedule.epochs=2.5"], "schedule.epochs: expected an integer"),
    (["optim.sam=yes please"], "optim.sam: expected true or false"),
    (["optim.lr=.nan"], "optim.lr: expected a finite number"),
    (["optim.lr=fast"], "optim.lr: expected a number, got 'fast'"),
    (["optim.betas=[0.9]"], "optim.betas: expected a list of 2 values"),
    (["optim=3"], "optim: expected a mapping of fields, got 3"),
    (["model.name=null"], "model.name: null is not allowed"),
    (["optim.nesterov=true"], "optim.nesterov: only for optim.name=sgd"),
    (["data.dataset=folder"], "data.root: dataset 'folder' needs data.root"),
    (["schedule.warmup_epochs=20", "schedule.epochs=10"], "schedule.warmup_epochs: 20.0 is out of range"),
    (["train.precision=fp16"], "train.precision: 'fp16' is refused: fp16 needs a GradScaler"),
    (["train.dist_timeout_s=0"], "train.dist_timeout_s: 0.0 is out of range"),
    (["seed=-1"], "seed: -1 is out of range"),
    (["seed=99999999999"], "seed: 99999999999 is out of range"),
    (["data.seed=-2"], "data.seed: -2 is out of range"),
    (["optim.eta=-0.1"], "optim.eta: -0.1 is out of range"),
    (["optim.sam_every=0"], "optim.sam_every: 0 is out of range"),
    (["optim.sam=false", "optim.sam_every=2"], "optim.sam_every: 2 needs optim.sam=true"),
    (["optim.variant=gsam"], "optim.variant: 'gsam' needs optim.sam=true"),
    (["optim.sam=true", "optim.variant=looksam"], "optim.variant: 'looksam' reuses a direction"),
    (["optim.sam=true", "optim.variant=lsam"], "optim.variant"),
    (["optim.sam=true", "optim.alpha=0.5"], "optim.alpha: only for optim.variant"),
    (["optim.sam=true", "optim.variant=gsam", "optim.alpha=-1"], "optim.alpha: -1.0 is out of range"),
    (["optim.sam=true", "optim.rho=0.1", "optim.rho_min=0.2"], "optim.rho_min: 0.2 is out of range"),
    (["norequal"], "override 'norequal': expected key=value"),
    (["optim..lr=1"], "expected key=value"),
    (["optim.lr.x=1"], "optim.lr: expected a number"),
    (["optim.lr=0.1", "optim.lr.x=1"], "optim.lr is not a section"),
])
def test_bad_fields_are_named(tmp_path: Path, overrides: list[str], culprit: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    with pytest.raises(ConfigError) as err:
        config.load(recipe, overrides)
    assert culprit in str(err.value)
    assert str(recipe) in str(err.value) or "override" in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        config.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        config.load(bad)


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = config.load(TINY, ["optim.betas=[0.8, 0.95]"])
    config.dump(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg
