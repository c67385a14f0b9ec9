"""Bad input campaign: every bad recipe, override, data file, run directory and fault ends in a clear error.

Each case checks that the error names its culprit (field, file or value), that the CLI exits non-zero without a
traceback, and, for cases aimed at an existing run directory, that no file of that run changes.
"""

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    FAST,
    FMNIST,
    HAVE_FMNIST,
    MICRO,
    NO_FMNIST,
    ONE_EPOCH,
    TEST_IMAGES,
    TEST_LABELS,
    TINY,
    TRAIN_IMAGES,
    TRAIN_LABELS,
)
from PIL import Image

from sharpvision import config
from sharpvision.cli import main
from sharpvision.config import ConfigError, DataConfig
from sharpvision.data import DataError, build_datasets
from sharpvision.train import TrainingDiverged, train

N_TRAIN, N_TEST = 40, 20


def cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def assert_user_error(rc: int, err: str, *culprits: str) -> None:
    assert rc not in (0, None), err
    assert "error: " in err, err
    assert "Traceback" not in err, err
    for culprit in culprits:
        assert culprit in err, (culprit, err)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fill(template, **places) -> str:
    text = str(template)
    for key, value in places.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def sharpvision(*argv, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharpvision", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def idx(array, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def intact_idx() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {TRAIN_IMAGES: idx(rng.integers(0, 256, (N_TRAIN, 28, 28))),
            TRAIN_LABELS: idx(np.arange(N_TRAIN) % 10),
            TEST_IMAGES: idx(rng.integers(0, 256, (N_TEST, 28, 28))),
            TEST_LABELS: idx(np.arange(N_TEST) % 10)}


def fake_fashion_mnist(root: Path, name: str | None = None, damage=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for file, raw in intact_idx().items():
        content = damage(raw) if file == name else gzip.compress(raw)
        if content is not None:
            (root / file).write_bytes(content)
    return root


def real_fashion_mnist(root: Path, name: str, damage) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for file in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        if file == name:
            (root / file).write_bytes(damage((FMNIST / file).read_bytes()))
        else:
            (root / file).symlink_to(FMNIST / file)
    return root


def write_png(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    if not HAVE_FMNIST:  # its tests carry needs_fmnist; this guards one added without it
        pytest.skip(NO_FMNIST)
    run = tmp_path_factory.mktemp("finished") / "run"
    summary = train(config.load(TINY, ONE_EPOCH), run, progress=False)
    assert summary["epochs"] == 1 and (run / "summary.json").is_file()
    hashes = snapshot(run)
    assert any(name.startswith("checkpoints/") for name in hashes)
    return run, hashes


@pytest.fixture(scope="module")
def half_run(tmp_path_factory) -> Path:
    if not HAVE_FMNIST:  # its tests carry needs_fmnist; this guards one added without it
        pytest.skip(NO_FMNIST)
    run = tmp_path_factory.mktemp("half") / "run"
    out = train(config.load(TINY, [*FAST, "schedule.epochs=2"]), run, stop_after_epoch=1, progress=False)
    assert out["stopped_at_epoch"] == 1
    return run


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


RECIPE_TEXTS = [
    pytest.param("optim:\n  lr: 0.1\n   rho: 0.2\n", ["malformed YAML", "line 3"], id="bad-indentation"),
    pytest.param("optim:\n\tlr: 0.1\n", ["malformed YAML", "line 2"], id="tab-indentation"),
    pytest.param("optim:\n  betas: [0.9, 0.99\n", ["malformed YAML", "flow sequence"], id="unclosed-bracket"),
    pytest.param("model: {name: vit_micro\n", ["malformed YAML", "flow mapping"], id="unclosed-brace"),
    pytest.param('name: "tiny\n', ["malformed YAML", "quoted scalar"], id="unclosed-quote"),
    pytest.param("optim:\n  rho: !!float ;\n", ["malformed YAML", "could not convert"], id="bad-tagged-float"),
    pytest.param("optim:\n  rho: !!float\n", ["malformed YAML"], id="empty-tagged-float"),
    pytest.param("name: a: b\n", ["malformed YAML", "mapping values are not allowed"], id="colon-in-value"),
    pytest.param("name: a\n---\nname: b\n", ["malformed YAML", "single document"], id="two-documents"),
    pytest.param("name: *nope\n", ["malformed YAML", "undefined alias 'nope'"], id="undefined-alias"),
    pytest.param("? [a, b]\n: 1\n", ["malformed YAML", "unhashable key"], id="unhashable-key"),
    pytest.param("optim:\n  lr: !!python/object/apply:os.system [echo]\n", ["malformed YAML", "python/object"],
                 id="python-tag"),
    pytest.param("name: tiny\x00\n", ["malformed YAML", "#x0000"], id="nul-character"),
    pytest.param("- name: tiny\n- seed: 1\n", ["expected a mapping at the top level, got list"], id="top-level-list"),
    pytest.param("42\n", ["expected a mapping at the top level, got int"], id="top-level-int"),
    pytest.param("tiny\n", ["expected a mapping at the top level, got str"], id="top-level-string"),
    pytest.param("modle:\n  name: vit_micro\n", ["modle: unknown field (did you mean model?)"], id="unknown-top-typo"),
    pytest.param("epochs: 3\n", ["epochs: unknown field; known: name, seed, task, model"], id="unknown-top-known-list"),
    pytest.param("data:\n  batchsize: 3\n", ["data.batchsize: unknown field (did you mean data.batch_size?)"],
                 id="unknown-nested-typo"),
    pytest.param("schedule:\n  warmup: 3\n", ["schedule.warmup: unknown field (did you mean schedule.warmup_epochs?)"],
                 id="unknown-nested-prefix"),
    pytest.param("train:\n  ema: 0.9\n", ["train.ema: unknown field; known: device"], id="unknown-nested-known-list"),
    pytest.param("optim: 0.1\n", ["optim: expected a mapping of fields, got 0.1"], id="scalar-for-section"),
    pytest.param("model: [vit_micro]\n", ["model: expected a mapping of fields, got ['vit_micro']"],
                 id="list-for-section"),
    pytest.param("data: null\n", ["data: expected a mapping of fields, got None"], id="null-section"),
    pytest.param("model:\n  kwargs: [1, 2]\n", ["model.kwargs: expected a mapping, got [1, 2]"],
                 id="list-for-mapping"),
    pytest.param("optim:\n  lr: {value: 0.1}\n", ["optim.lr: expected a number, got {'value': 0.1}"],
                 id="mapping-for-float"),
    pytest.param("name:\n  first: a\n", ["name: expected a string, got {'first': 'a'}"], id="mapping-for-string"),
    pytest.param("model:\n  name:\n", ["model.name: null is not allowed"], id="empty-value-null"),
    pytest.param("name: 2020-01-01\n", ["name: expected a string, got datetime.date(2020, 1, 1)"],
                 id="date-for-string"),
    pytest.param("optim:\n  sam: 'yes'\n", ["optim.sam: expected true or false, got 'yes'"], id="quoted-bool"),
    pytest.param("seed: 1.0e3\n", ["seed: expected an integer, got '1.0e3'"], id="float-text-for-int"),
    pytest.param("optim:\n  rho: -.inf\n", ["optim.rho: expected a finite number, got -inf"], id="yaml-minus-inf"),
    pytest.param("optim:\n  lr: 1" + "0" * 400 + "\n", ["optim.lr: expected a finite number"],
                 id="integer-beyond-float-range"),
    pytest.param("[" * 3000 + "]" * 3000 + "\n", ["nested too deeply"], id="deeply-nested"),
    pytest.param("model: &m {kwargs: *m}\n", ["nested too deeply"], id="self-referential-alias"),
    pytest.param("optim:\n  lr: 0.1\noptim:\n  sam: true\n", ["key 'optim' appears twice"], id="duplicate-section"),
]


@pytest.mark.parametrize("text,culprits", RECIPE_TEXTS)
def test_bad_recipe_file(tmp_path: Path, capsys, text: str, culprits: list[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(recipe)
    for culprit in [f"recipe {recipe}", *culprits]:
        assert culprit in str(info.value)
    rc, err = cli(capsys, "train", recipe, "--out", tmp_path / "out")
    assert_user_error(rc, err, str(recipe), *culprits)
    assert not (tmp_path / "out").exists()


def test_binary_recipe_file(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(gzip.compress(b"name: tiny\n"))
    rc, err = cli(capsys, "train", recipe, "--out", tmp_path / "out")
    assert_user_error(rc, err, str(recipe))
    with pytest.raises(ConfigError, match="recipe.yaml: not a text file"):
        config.load(recipe)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_recipe_path_that_is_not_a_file(tmp_path: Path, capsys, kind: str) -> None:
    recipe = tmp_path / "recipes"
    if kind == "directory":
        recipe.mkdir()
    problem = "is a directory" if kind == "directory" else "no such file"
    with pytest.raises(ConfigError, match=f"recipe {recipe}: {problem}"):
        config.load(recipe)
    rc, err = cli(capsys, "train", recipe, "--out", tmp_path / "out")
    assert_user_error(rc, err, f"recipe {recipe}")
    assert not (tmp_path / "out").exists()


OVERRIDES = [
    pytest.param(["optim.rhoo=0.1"], "optim.rhoo: unknown field (did you mean optim.rho?)", id="unknown-nested"),
    pytest.param(["modle.name=x"], "modle: unknown field (did you mean model?)", id="unknown-section"),
    pytest.param(["xyz=1"], "xyz: unknown field; known: name, seed, task, model", id="unknown-top"),
    pytest.param(["optim.1=2"], "optim.1: unknown field; known: name, lr", id="unknown-numeric-key"),
    pytest.param(["optim.rho=abc"], "optim.rho: expected a number, got 'abc'", id="string-for-float"),
    pytest.param(["optim.lr="], "optim.lr: expected a number, got ''", id="empty-value-for-float"),
    pytest.param(["schedule.epochs=2.5"], "schedule.epochs: expected an integer, got 2.5", id="float-for-int"),
    pytest.param(["seed=2.0"], "seed: expected an integer, got 2.0", id="integral-float-for-int"),
    pytest.param(["schedule.epochs=ten"], "schedule.epochs: expected an integer, got 'ten'", id="word-for-int"),
    pytest.param(["data.batch_size=true"], "data.batch_size: expected an integer, got True", id="bool-for-int"),
    pytest.param(["seed=True"], "seed: expected an integer, got True", id="capital-bool-for-int"),
    pytest.param(["optim.sam=1"], "optim.sam: expected true or false, got 1", id="int-for-bool"),
    pytest.param(["optim.sam=yes please"], "optim.sam: expected true or false, got 'yes please'", id="text-for-bool"),
    pytest.param(["optim.lr=[0.1]"], "optim.lr: expected a number, got [0.1]", id="list-for-float"),
    pytest.param(["optim.lr={a: 1}"], "optim.lr: expected a number, got {'a': 1}", id="mapping-for-float"),
    pytest.param(["optim.lr=true"], "optim.lr: expected a number, got True", id="bool-for-float"),
    pytest.param(["name=3"], "name: expected a string, got 3", id="int-for-string"),
    pytest.param(["data.root=[a]"], "data.root: expected a string, got ['a']", id="list-for-optional-string"),
    pytest.param(["model=[1]"], "model: expected a mapping of fields, got [1]", id="list-for-section"),
    pytest.param(["optim=3"], "optim: expected a mapping of fields, got 3", id="int-for-section"),
    pytest.param(["model.kwargs=3"], "model.kwargs: expected a mapping, got 3", id="int-for-mapping"),
    pytest.param(["optim.betas=0.9"], "optim.betas: expected a list of 2 values, got 0.9", id="scalar-for-pair"),
    pytest.param(["optim.betas=[0.9]"], "optim.betas: expected a list of 2 values, got [0.9]", id="short-pair"),
    pytest.param(["optim.betas=[0.9, 0.99, 0.999]"], "optim.betas: expected a list of 2 values", id="long-pair"),
    pytest.param(["optim.betas=[0.9, x]"], "optim.betas[1]: expected a number, got 'x'", id="text-in-pair"),
    pytest.param(["optim.lr=null"], "optim.lr: null is not allowed", id="null-float"),
    pytest.param(["model.name=~"], "model.name: null is not allowed", id="null-string"),
    pytest.param(["train.ema_decay=fast"], "train.ema_decay: expected a number, got 'fast'", id="text-for-optional"),
    pytest.param(["optim.rho=-0.1"], "optim.rho: -0.1 is out of range", id="negative-rho"),
    pytest.param(["data.fraction=0"], "data.fraction: 0.0 is out of range", id="fraction-zero"),
    pytest.param(["data.fraction=1.5"], "data.fraction: 1.5 is out of range", id="fraction-above-one"),
    pytest.param(["data.label_noise=1"], "data.label_noise: 1.0 is out of range", id="label-noise-one"),
    pytest.param(["data.label_noise=-0.1"], "data.label_noise: -0.1 is out of range", id="label-noise-negative"),
    pytest.param(["data.val_fraction=1"], "data.val_fraction: 1.0 is out of range", id="val-fraction-one"),
    pytest.param(["optim.lr=-0.001"], "optim.lr: -0.001 is out of range", id="negative-lr"),
    pytest.param(["optim.lr=0"], "optim.lr: 0.0 is out of range", id="zero-lr"),
    pytest.param(["optim.weight_decay=-0.01"], "optim.weight_decay: -0.01 is out of range", id="negative-wd"),
    pytest.param(["optim.momentum=1"], "optim.momentum: 1.0 is out of range", id="momentum-one"),
    pytest.param(["optim.betas=[0.9, 1.0]"], "optim.betas[1]: 1.0 is out of range", id="beta2-one"),
    pytest.param(["optim.betas=[-0.1, 0.999]"], "optim.betas[0]: -0.1 is out of range", id="beta1-negative"),
    pytest.param(["optim.eta=-0.1"], "optim.eta: -0.1 is out of range", id="negative-eta"),
    pytest.param(["schedule.epochs=0"], "schedule.epochs: 0 is out of range", id="zero-epochs"),
    pytest.param(["schedule.warmup_epochs=5"], "schedule.warmup_epochs: 5.0 is out of range", id="warmup-too-long"),
    pytest.param(["schedule.warmup_epochs=-1"], "schedule.warmup_epochs: -1.0 is out of range", id="negative-warmup"),
    pytest.param(["schedule.min_lr_ratio=1.5"], "schedule.min_lr_ratio: 1.5 is out of range", id="min-lr-ratio"),
    pytest.param(["data.batch_size=0"], "data.batch_size: 0 is out of range", id="zero-batch"),
    pytest.param(["data.eval_batch_size=0"], "data.eval_batch_size: 0 is out of range", id="zero-eval-batch"),
    pytest.param(["data.num_workers=-1"], "data.num_workers: -1 is out of range", id="negative-workers"),
    pytest.param(["data.img_size=4"], "data.img_size: 4 is out of range", id="tiny-image-size"),
    pytest.param(["data.subset_train=0"], "data.subset_train: 0 is out of range", id="zero-subset"),
    pytest.param(["seed=-1"], "seed: -1 is out of range", id="negative-seed"),
    pytest.param(["seed=4294967296"], "seed: 4294967296 is out of range", id="seed-above-uint32"),
    pytest.param(["data.seed=-2"], "data.seed: -2 is out of range", id="negative-data-seed"),
    pytest.param(["model.drop_path_rate=1"], "model.drop_path_rate: 1.0 is out of range", id="drop-path-one"),
    pytest.param(["model.drop_rate=-0.1"], "model.drop_rate: -0.1 is out of range", id="negative-dropout"),
    pytest.param(["train.ema_decay=1"], "train.ema_decay: 1.0 is out of range", id="ema-one"),
    pytest.param(["train.ema_decay=0"], "train.ema_decay: 0.0 is out of range", id="ema-zero"),
    pytest.param(["train.label_smoothing=1"], "train.label_smoothing: 1.0 is out of range", id="smoothing-one"),
    pytest.param(["train.log_every=0"], "train.log_every: 0 is out of range", id="zero-log-every"),
    pytest.param(["train.max_steps_per_epoch=0"], "train.max_steps_per_epoch: 0 is out of range", id="zero-steps"),
    pytest.param(["train.peak_tflops=0"], "train.peak_tflops: 0.0 is out of range", id="zero-peak"),
    pytest.param(["optim.sam_every=0"], "optim.sam_every: 0 is out of range", id="zero-sam-every"),
    pytest.param(["optim.rho_min=0.1"], "optim.rho_min: 0.1 is out of range", id="rho-min-above-rho"),
    pytest.param(["optim.clip_grad_norm=0"], "optim.clip_grad_norm: 0.0 is out of range", id="zero-clip"),
    pytest.param(["optim.lr=.nan"], "optim.lr: expected a finite number, got nan", id="nan-lr"),
    pytest.param(["optim.rho=nan"], "optim.rho: expected a finite number, got nan", id="nan-text-rho"),
    pytest.param(["optim.rho=.inf"], "optim.rho: expected a finite number, got inf", id="inf-rho"),
    pytest.param(["optim.lr=-.inf"], "optim.lr: expected a finite number, got -inf", id="minus-inf-lr"),
    pytest.param(["optim.lr=1e999"], "optim.lr: expected a finite number, got inf", id="overflowing-float-text"),
    pytest.param(["optim.lr=1" + "0" * 400], "optim.lr: expected a finite number", id="overflowing-integer"),
    pytest.param(["train.threads=100000"], "train.threads: 100000 is out of range", id="absurd-thread-count"),
    pytest.param(["train.precision=fp16"], "train.precision: 'fp16' is refused", id="fp16"),
    pytest.param(["optim.sam=false", "optim.sam_every=2"], "optim.sam_every: 2 needs optim.sam=true",
                 id="sam-every-without-sam"),
    pytest.param(["optim.nesterov=true"], "optim.nesterov: only for optim.name=sgd", id="nesterov-adamw"),
    pytest.param(["optim.variant=looksam"], "optim.variant: 'looksam' reuses a direction", id="looksam-every-1"),
    pytest.param(["optim.alpha=0.5"], "optim.alpha: only for optim.variant", id="alpha-plain-sam"),
    pytest.param(["data.dataset=folder"], "data.root: dataset 'folder' needs data.root", id="folder-without-root"),
    pytest.param(["optim.name=adam"], "optim.name: 'adam' is not one of", id="unknown-optimizer"),
    pytest.param(["optim.name=Adamw"], "(did you mean 'adamw'?)", id="optimizer-case"),
    pytest.param(["data.dataset=mnist"], "data.dataset: 'mnist' is not one of", id="unknown-dataset"),
    pytest.param(["data.augment=strongest"], "data.augment: 'strongest' is not one of 'none', 'basic', 'strong' "
                 "(did you mean 'strong'?)", id="unknown-augment"),
    pytest.param(["schedule.decay=cos"], "schedule.decay: 'cos' is not one of", id="unknown-decay"),
    pytest.param(["train.device=tpu"], "train.device: 'tpu' is not one of", id="unknown-device"),
    pytest.param(["optim.variant=lsam"], "optim.variant: 'lsam' is not one of", id="unknown-variant"),
    pytest.param(["optim.rho"], "override 'optim.rho': expected key=value", id="no-equals"),
    pytest.param(["=0.1"], "override '=0.1': expected key=value", id="empty-key"),
    pytest.param(["a..b=1"], "override 'a..b=1': expected key=value", id="empty-segment"),
    pytest.param([".rho=1"], "override '.rho=1': expected key=value", id="leading-dot"),
    pytest.param(["optim.=1"], "override 'optim.=1': expected key=value", id="trailing-dot"),
    pytest.param(["name.x=1"], "override 'name.x=1': name is not a section", id="into-top-scalar"),
    pytest.param(["optim.lr.x=1"], "override 'optim.lr.x=1': optim.lr is not a section", id="into-nested-scalar"),
    pytest.param(["optim.rho=[0.1"], "override 'optim.rho=[0.1': value is not valid YAML", id="unclosed-list"),
    pytest.param(["optim.rho={"], "override 'optim.rho={': value is not valid YAML", id="unclosed-mapping"),
    pytest.param(["optim.rho=: x"], "override 'optim.rho=: x': value is not valid YAML", id="bare-colon"),
    pytest.param(["optim.lr=!!python/name:os.system"], "value is not valid YAML", id="python-tag"),
]


@pytest.mark.parametrize("overrides,culprit", OVERRIDES)
def test_bad_override(tmp_path: Path, capsys, overrides: list[str], culprit: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(TINY, [*FAST, *overrides])
    assert culprit in str(info.value)
    rc, err = cli(capsys, "train", TINY, *FAST, *overrides, "--out", tmp_path / "out", "--quiet")
    assert_user_error(rc, err, "sharpvision train: error: ", culprit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["", "  ", "..", "a/b"])
def test_run_names_that_are_not_one_folder(name: str) -> None:
    with pytest.raises(ConfigError, match=f"name: {name!r} is not a run name"):
        config.load(TINY, [f"name={name!r}"])


def test_bad_override_in_demo(tmp_path: Path, capsys) -> None:
    rc, err = cli(capsys, "demo", "--out", tmp_path / "demo", "--quiet", "optim.rho=-1")
    assert_user_error(rc, err, "sharpvision demo: error: ", "optim.rho: -1.0 is out of range")
    assert not (tmp_path / "demo").exists()


def test_missing_demo_recipe(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "nope.yaml"
    rc, err = cli(capsys, "demo", "--recipe", recipe, "--out", tmp_path / "demo")
    assert_user_error(rc, err, f"recipe {recipe}: no such file")


ARGV = [
    pytest.param([], "the following arguments are required: command", id="no-command"),
    pytest.param(["trian"], "invalid choice: 'trian'", id="unknown-subcommand"),
    pytest.param(["train"], "the following arguments are required: recipe", id="train-without-recipe"),
    pytest.param(["train", TINY, "--stop-after-epoch", "0"], "0 is not a positive integer",
                 id="stop-after-epoch-zero"),
    pytest.param(["train", TINY, "--stop-after-epoch", "-3"], "-3 is not a positive integer",
                 id="stop-after-epoch-negative"),
    pytest.param(["train", TINY, "--stop-after-epoch", "two"], "'two'", id="stop-after-epoch-word"),
    pytest.param(["train", TINY, "--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
    pytest.param(["train", TINY, "--quiet", "stray"], "unrecognized arguments: stray", id="stray-after-flag"),
    pytest.param(["eval"], "the following arguments are required: target", id="eval-without-target"),
    pytest.param(["analyze", "x", "--sample", "0"], "0 is not a positive integer", id="analyze-zero-sample"),
    pytest.param(["analyze", "x", "--mode", "bogus"], "invalid choice: 'bogus'", id="analyze-bad-mode"),
    pytest.param(["analyze", "x", "--dtype", "float16"], "invalid choice: 'float16'", id="analyze-bad-dtype"),
]


@pytest.mark.parametrize("argv,culprit", ARGV)
def test_bad_command_line(tmp_path: Path, capsys, monkeypatch, argv: list, culprit: str) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = cli(capsys, *argv)
    assert rc == 2
    assert_user_error(rc, err, culprit)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["eval", "analyze"])
@pytest.mark.parametrize("kind", ["missing", "empty-directory", "yaml-file"])
def test_checkpoint_target_that_is_not_a_run(tmp_path: Path, capsys, command: str, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "empty-directory":
        target.mkdir()
    elif kind == "yaml-file":
        target = tmp_path / "tiny.yaml"
        shutil.copy(TINY, target)
    rc, err = cli(capsys, command, target)
    assert_user_error(rc, err, f"sharpvision {command}: error: ", str(target))


FAKE_DAMAGE = [
    pytest.param(TRAIN_IMAGES, lambda raw: None, "is missing", id="train-images-missing"),
    pytest.param(TEST_LABELS, lambda raw: None, "is missing", id="test-labels-missing"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(raw)[:-200], "not a readable gzip file",
                 id="gzip-truncated"),
    pytest.param(TRAIN_LABELS, lambda raw: raw, "not a readable gzip file", id="not-gzipped"),
    pytest.param(TEST_IMAGES, lambda raw: b"", "bad IDX magic number none (file too short)", id="empty-file"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(b"\0\0\0\0" + raw[4:]), "bad IDX magic number 0x00000000",
                 id="zeroed-magic"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(idx(np.arange(N_TRAIN) % 10)), "bad IDX magic number",
                 id="labels-in-images-file"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(raw[:8]), "IDX header truncated", id="header-truncated"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(raw[:-784]), "wrong length", id="images-truncated"),
    pytest.param(TEST_LABELS, lambda raw: gzip.compress(raw + b"\0" * 7), "wrong length", id="trailing-bytes"),
    pytest.param(TRAIN_LABELS, lambda raw: gzip.compress(idx(np.arange(N_TRAIN - 1) % 10)),
                 f"{N_TRAIN - 1} labels but", id="fewer-labels-than-images"),
    pytest.param(TEST_LABELS, lambda raw: gzip.compress(idx(np.arange(N_TEST + 5) % 10)),
                 f"{N_TEST + 5} labels but", id="more-labels-than-images"),
    pytest.param(TRAIN_IMAGES, lambda raw: gzip.compress(idx(np.zeros((N_TRAIN, 32, 32)))),
                 "images are (32, 32) pixels", id="wrong-image-size"),
    pytest.param(TRAIN_LABELS, lambda raw: gzip.compress(idx(np.full(N_TRAIN, 10))), "label 10 out of range",
                 id="label-out-of-range"),
]


def test_fake_fashion_mnist_is_readable_when_intact(tmp_path: Path) -> None:
    bundle = build_datasets(DataConfig(root=str(fake_fashion_mnist(tmp_path / "fm"))))
    assert len(bundle.train) == N_TRAIN and len(bundle.test) == N_TEST and bundle.num_classes == 10


@pytest.mark.parametrize("name,damage,culprit", FAKE_DAMAGE)
def test_damaged_fashion_mnist_file(tmp_path: Path, capsys, name: str, damage, culprit: str) -> None:
    root = fake_fashion_mnist(tmp_path / "fm", name, damage)
    with pytest.raises(DataError) as info:
        build_datasets(DataConfig(root=str(root)))
    assert str(root / name) in str(info.value) and culprit in str(info.value)
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, f"data.root={root}")
    assert_user_error(rc, err, "sharpvision train: error: ", str(root / name), culprit)


def corrupt_header(data: bytes) -> bytes:
    raw = bytearray(gzip.decompress(data))
    raw[2] = 0x0D
    return gzip.compress(bytes(raw))


REAL_DAMAGE = [
    pytest.param(TRAIN_IMAGES, lambda data: data[: len(data) // 2], "not a readable gzip file",
                 id="real-train-images-truncated"),
    pytest.param(TRAIN_LABELS, lambda data: data[:-1], "not a readable gzip file", id="real-train-labels-last-byte"),
    pytest.param(TEST_LABELS, corrupt_header, "bad IDX magic number 0x00000d01", id="real-test-labels-bad-magic"),
]


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("name,damage,culprit", REAL_DAMAGE)
def test_damaged_copy_of_real_fashion_mnist(tmp_path: Path, capsys, name: str, damage, culprit: str) -> None:
    root = real_fashion_mnist(tmp_path / "fm", name, damage)
    with pytest.raises(DataError) as info:
        build_datasets(DataConfig(root=str(root)))
    assert str(root / name) in str(info.value) and culprit in str(info.value)
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, f"data.root={root}")
    assert_user_error(rc, err, str(root / name), culprit)


@pytest.mark.parametrize("kind", ["empty-folder", "nonexistent", "a-file"])
def test_fashion_mnist_root_without_files(tmp_path: Path, capsys, kind: str) -> None:
    root = tmp_path / "root"
    if kind == "empty-folder":
        root.mkdir()
    elif kind == "a-file":
        root.write_text("not a folder")
    with pytest.raises(DataError, match="is missing"):
        build_datasets(DataConfig(root=str(root)))
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, f"data.root={root}")
    assert_user_error(rc, err, f"Fashion-MNIST file {root / TRAIN_IMAGES} is missing")


def image_folder(root: Path, train: list[str], val: list[str], corrupt: bool = False) -> Path:
    for split, classes in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True)
        for c in classes:
            write_png(root / split / c / "a.png")
    if corrupt:
        (root / "train" / train[0] / "a.png").write_bytes(b"not a png")
    return root


def test_cifar_missing(tmp_path: Path, capsys, empty: Path) -> None:
    with pytest.raises(DataError, match=f"cifar10 not found or corrupt under {empty}"):
        build_datasets(DataConfig(dataset="cifar10", root=str(empty)))
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, "data.dataset=cifar10",
                  f"data.root={empty}")
    assert_user_error(rc, err, "cifar10 not found", str(empty), "data.download=true")


def test_image_folder_without_splits(tmp_path: Path, capsys, empty: Path) -> None:
    with pytest.raises(DataError, match=f"image folder {empty / 'train'} is missing"):
        build_datasets(DataConfig(dataset="folder", root=str(empty)))
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, "data.dataset=folder",
                  f"data.root={empty}", "data.img_size=28")
    assert_user_error(rc, err, f"image folder {empty / 'train'} is missing")


def test_image_folder_without_class_folders(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", [], [])
    with pytest.raises(DataError, match=f"image folder {root / 'train'}"):
        build_datasets(DataConfig(dataset="folder", root=str(root)))


def test_image_folders_with_different_classes(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", ["cat", "dog"], ["cat", "cow"])
    with pytest.raises(DataError, match="different class folders"):
        build_datasets(DataConfig(dataset="folder", root=str(root)))


def test_image_folder_with_undecodable_image(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", ["cat", "dog"], ["cat", "dog"], corrupt=True)
    bundle = build_datasets(DataConfig(dataset="folder", root=str(root), img_size=8, augment="none"))
    with pytest.raises(DataError, match=f"{root / 'train' / 'cat' / 'a.png'}: cannot decode image"):
        bundle.train[0]


RUNTIME = [
    pytest.param(["model.name=vit_s61"], "unknown model 'vit_s61'; close matches: vit_s16", id="unknown-model"),
    pytest.param(["model.kwargs={depthh: 2}"], "model: 'vit_micro' rejects its arguments", id="unknown-model-kwarg"),
    pytest.param(["model.kwargs={num_classes: 5}"], "model.kwargs: num_classes must not be set here",
                 id="reserved-model-kwarg"),
    pytest.param(["model.kwargs={embed_dim: 95}"], "model.kwargs", id="inconsistent-model-kwargs"),
    pytest.param(["model.kwargs={patch_size: 0}"], "model.kwargs", id="zero-patch-size"),
    pytest.param(["data.augment=strong", "data.rand_augment=bogus"], "data.rand_augment: 'bogus'",
                 id="bad-rand-augment"),
    pytest.param(["data.batch_size=100000"], "data.batch_size: 100000 is larger than the training set",
                 id="batch-larger-than-data"),
    pytest.param(["data.subset_train=3"], "data.batch_size: 64 is larger than the training set (3 examples)",
                 id="subset-smaller-than-batch"),
    pytest.param(["train.device=cuda"], "train.device: 'cuda' asked for, but torch sees no CUDA device",
                 id="cuda-without-gpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
]


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("overrides,culprit", RUNTIME)
def test_bad_input_found_while_starting(tmp_path: Path, capsys, overrides: list[str], culprit: str) -> None:
    rc, err = cli(capsys, "train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, *overrides)
    assert_user_error(rc, err, "sharpvision train: error: ", culprit)
    assert not (tmp_path / "out" / "summary.json").exists()


RUN_DIR = [
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", *ONE_EPOCH],
                 ["run directory {run} already holds a run; pass --resume"], id="train-again-without-resume"),
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", "--resume", *ONE_EPOCH, "optim.rho=0.2"],
                 ["--resume: the recipe differs", "optim.rho (0.05 -> 0.2)"], id="resume-other-rho"),
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", "--resume", *FAST, "schedule.epochs=2"],
                 ["schedule.epochs (1 -> 2)"], id="resume-more-epochs"),
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", "--resume", *ONE_EPOCH, "model.name=mixer_micro"],
                 ["model.name ('vit_micro' -> 'mixer_micro')"], id="resume-other-model"),
    pytest.param(["train", MICRO, "--out", "{run}", "--quiet", "--resume", *ONE_EPOCH],
                 ["--resume: the recipe differs", "name ('tiny' -> 'micro')"], id="resume-other-recipe-file"),
    pytest.param(["train", TINY, *ONE_EPOCH, "optim.rho", "--out", "{run}", "--quiet", "--resume"],
                 ["override 'optim.rho': expected key=value"], id="resume-malformed-override"),
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", "--resume", *ONE_EPOCH, "optim.rho=-1"],
                 ["optim.rho: -1.0 is out of range"], id="resume-out-of-range"),
    pytest.param(["train", TINY, "--out", "{run}", "--quiet", "--resume", *ONE_EPOCH, "optim.rhoo=0.1"],
                 ["optim.rhoo: unknown field (did you mean optim.rho?)"], id="resume-unknown-field"),
    pytest.param(["train", TINY, "--out", "{run}", "--resume", "--stop-after-epoch", "0", *ONE_EPOCH],
                 ["0 is not a positive integer"], id="resume-stop-after-zero"),
    pytest.param(["train", "{run}/config.yaml", "--out", "{run}", "--quiet", "--resume", "optim.lr=-1"],
                 ["optim.lr: -1.0 is out of range"], id="resume-own-config-bad-override"),
    pytest.param(["train", TINY, "--out", "{run}/config.yaml", "--quiet", *ONE_EPOCH],
                 ["run directory {run}/config.yaml is a file"], id="out-is-a-file-of-the-run"),
    pytest.param(["eval", "{run}", "data.root={empty}"], ["Fashion-MNIST file {empty}"], id="eval-missing-data"),
    pytest.param(["eval", "{run}", "data.root"], ["override 'data.root': expected key=value"],
                 id="eval-malformed-override"),
    pytest.param(["eval", "{run}", "--ema"], ["kept no EMA weights"], id="eval-ema-without-ema"),
    pytest.param(["eval", "{run}", "model.name=mixer_micro"], ["does not fit model 'mixer_micro'"],
                 id="eval-other-model"),
    pytest.param(["analyze", "{run}", "--what", "bogus"], ["--what: unknown piece(s) bogus"],
                 id="analyze-unknown-piece"),
    pytest.param(["eval", "{run}", "--attack", "pgd", "--eps", "-0.1", "--subset", "8"],
                 ["attack eps must be >= 0", "-0.1"], id="eval-negative-eps"),
    pytest.param(["eval", "{run}", "--attack", "pgd", "--eps", "0.1,abc"], ["--eps: '0.1,abc' is not"],
                 id="eval-eps-not-numbers"),
    pytest.param(["eval", "{run}", "--attack", "pgd"], ["--eps: give at least one value"], id="eval-attack-no-eps"),
    pytest.param(["eval", "{run}", "--eps", "0.1"], ["--eps needs --attack"], id="eval-eps-without-attack"),
    pytest.param(["eval", "{run}", "--mnist-c", "rotate,snow", "--subset", "8"],
                 ["unknown MNIST-C corruption 'snow'"], id="eval-unknown-mnist-c-corruption"),
    pytest.param(["eval", "{run}", "--attack", "cw", "--eps", "0.1"], ["--attack", "invalid choice: 'cw'"],
                 id="eval-unknown-attack"),
]


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
@pytest.mark.parametrize("argv,culprits", RUN_DIR)
def test_bad_input_aimed_at_a_finished_run(finished_run, capsys, empty: Path, argv: list, culprits: list[str]) -> None:
    run, hashes = finished_run
    rc, err = cli(capsys, *[fill(a, run=run, empty=empty) for a in argv])
    assert_user_error(rc, err, *[fill(c, run=run, empty=empty) for c in culprits])
    assert snapshot(run) == hashes


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=True)
    return copy


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
def test_resume_with_unreadable_config_file(finished_run, tmp_path: Path, capsys) -> None:
    copy = copy_of(finished_run[0], tmp_path)
    (copy / "config.yaml").write_text("name: [unclosed\n")
    before = snapshot(copy)
    rc, err = cli(capsys, "train", TINY, "--out", copy, "--quiet", "--resume", *ONE_EPOCH)
    assert_user_error(rc, err, "--resume: cannot read", str(copy / "config.yaml"))
    assert snapshot(copy) == before


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
@pytest.mark.parametrize("command", ["eval", "resume"])
def test_truncated_checkpoint_files(finished_run, tmp_path: Path, capsys, command: str) -> None:
    copy = copy_of(finished_run[0], tmp_path)
    files = [p for p in (copy / "checkpoints").rglob("*") if p.is_file()]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    before = snapshot(copy)
    argv = ["eval", copy] if command == "eval" else ["train", TINY, "--out", copy, "--quiet", "--resume", *ONE_EPOCH]
    rc, err = cli(capsys, *argv)
    assert_user_error(rc, err, "checkpoint", str(copy))
    assert snapshot(copy) == before


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
def test_resume_with_missing_data_leaves_the_run_alone(finished_run, tmp_path: Path, capsys, empty: Path) -> None:
    copy = copy_of(finished_run[0], tmp_path)
    before = snapshot(copy)
    rc, err = cli(capsys, "train", TINY, "--out", copy, "--quiet", "--resume", *ONE_EPOCH, f"data.root={empty}")
    assert_user_error(rc, err, f"Fashion-MNIST file {empty / TRAIN_IMAGES} is missing")
    assert snapshot(copy) == before


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
@pytest.mark.parametrize("flags", [[], ["--resume"]], ids=["without-resume", "with-resume"])
def test_finished_run_without_checkpoints_is_not_overwritten(finished_run, tmp_path: Path, capsys,
                                                             flags: list[str]) -> None:
    copy = copy_of(finished_run[0], tmp_path)
    shutil.rmtree(copy / "checkpoints")
    before = snapshot(copy)
    rc, err = cli(capsys, "train", TINY, *ONE_EPOCH, "optim.rho=0.3", "--out", copy, "--quiet", *flags)
    assert {k: v for k, v in snapshot(copy).items() if k in before} == before
    assert_user_error(rc, err, str(copy))


def poison_loss(monkeypatch, kind: str) -> None:
    real = torch.nn.CrossEntropyLoss.forward

    def forward(self, logits, target):
        loss = real(self, logits, target)
        if kind == "nan-gradient":
            return loss * float("nan")
        return loss - loss.detach() + float(kind)

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", forward)


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
@pytest.mark.parametrize("kind,shown", [("nan", "nan"), ("inf", "inf"), ("nan-gradient", "nan")])
def test_diverging_loss_keeps_the_last_good_checkpoint(half_run, tmp_path: Path, capsys, monkeypatch, kind: str,
                                                       shown: str) -> None:
    run = copy_of(half_run, tmp_path)
    before = snapshot(run)
    recipe = [*FAST, "schedule.epochs=2"]
    poison_loss(monkeypatch, kind)
    with pytest.raises(TrainingDiverged, match=f"became {shown} at epoch 2"):
        train(config.load(TINY, recipe), run, resume=True, progress=False)
    rc, err = cli(capsys, "train", TINY, "--out", run, "--quiet", "--resume", *recipe)
    assert_user_error(rc, err, f"the training loss became {shown} at epoch 2", "keeps its last good checkpoint")
    after = snapshot(run)
    assert {k: after.get(k) for k in before} == before
    assert not (run / "summary.json").exists()
    monkeypatch.undo()
    summary = train(config.load(TINY, recipe), run, resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["steps"] == 6


@pytest.mark.needs_fmnist
def test_diverging_from_the_first_step_writes_no_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:
    poison_loss(monkeypatch, "nan")
    run = tmp_path / "run"
    rc, err = cli(capsys, "train", TINY, "--out", run, "--quiet", *ONE_EPOCH)
    assert_user_error(rc, err, "the training loss became nan at epoch 1, step 2")
    assert not [p for p in (run / "checkpoints").rglob("*") if p.is_file()]
    assert not (run / "summary.json").exists()


@pytest.mark.needs_fmnist
def test_subprocess_bad_override(tmp_path: Path) -> None:
    done = sharpvision("train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, "optim.rho=-0.5",
                       cwd=tmp_path)
    assert done.returncode == 2
    assert "sharpvision train: error: recipe" in done.stderr and "optim.rho: -0.5 is out of range" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.needs_fmnist
def test_subprocess_missing_dataset_files(tmp_path: Path, empty: Path) -> None:
    done = sharpvision("train", TINY, "--out", tmp_path / "out", "--quiet", *ONE_EPOCH, f"data.root={empty}",
                       cwd=tmp_path)
    assert done.returncode == 2
    assert f"Fashion-MNIST file {empty / TRAIN_IMAGES} is missing" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.needs_fmnist  # the finished_run / half_run fixtures train on the real data
def test_subprocess_retrain_into_finished_run(finished_run, tmp_path: Path) -> None:
    run, hashes = finished_run
    done = sharpvision("train", TINY, "--out", run, "--quiet", *ONE_EPOCH, cwd=tmp_path)
    assert done.returncode == 2
    assert f"run directory {run} already holds a run; pass --resume" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(run) == hashes


def test_subprocess_unknown_subcommand(tmp_path: Path) -> None:
    done = sharpvision("trian", TINY, cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid choice: 'trian'" in done.stderr and "Traceback" not in done.stderr
