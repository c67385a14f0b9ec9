"""Recipes: every shipped file validates; bad fields are named; overrides parse as YAML."""

from pathlib import Path

import pytest

from sharpvision import config
from sharpvision.config import ConfigError

CONFIGS = Path(__file__).parents[1] / "configs"
RECIPES = sorted(CONFIGS.rglob("*.yaml"))


def test_recipes_exist() -> None:
    names = {p.relative_to(CONFIGS).as_posix() for p in RECIPES}
    for fam in ("vit", "mixer", "resnet", "convnext"):
        assert f"fmnist/{fam}.yaml" in names and f"fmnist/{fam}_sam.yaml" in names
    assert "tiny.yaml" in names and "demo.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    cfg = config.load(path)
    assert cfg.name
    assert path.read_text().startswith("#"), "each recipe states its source/command in a header comment"


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
    cfg = config.load(CONFIGS / "tiny.yaml", ["optim.betas=[0.8, 0.95]"])
    config.dump(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg
