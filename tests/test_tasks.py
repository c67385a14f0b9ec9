"""The task registry and open_run: every task builds its model, gives targets its model's output is scored against
and says whether it can be evaluated; nothing outside the registry compares a task's name; every guard of opening
a trained run is one line naming the culprit, before any data is read."""

from __future__ import annotations

import ast
import json
import shutil
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import ONE_EPOCH, ROOT, TINY

from sharpvision import checkpoint as ckpt
from sharpvision import config
from sharpvision.cli import main
from sharpvision.config import ConfigError
from sharpvision.runs import open_run
from sharpvision.tasks import CLASSIFY, CONTRASTIVE, FINETUNE, PRUNE, TASKS, task_of
from sharpvision.train import train

SRC = ROOT / "src" / "sharpvision"
SHAPE = SimpleNamespace(num_classes=10, img_size=28, in_chans=1)  # what a model needs of its data
# a recipe of each task (tiny.yaml's vit_micro), and whether its model has a classifier to evaluate
RECIPES = {
    "classify": ({}, True),
    "contrastive": ({"task": "contrastive"}, False),
    "finetune": ({"finetune": {"mode": "linear"}}, True),  # a probe of random features: a fine-tune without source
    "prune": ({"model": {"name": "vit_micro", "widths": {"blocks.0.mlp": 96, "blocks.1.mlp": 48}}}, True),
}


def recipe(name: str) -> config.Config:
    base = config.load(TINY).to_dict()
    for section, value in RECIPES[name][0].items():
        base[section] = {**base[section], **value} if isinstance(value, dict) else value
    return config.from_dict(base)


def test_every_task_has_a_recipe_here_and_every_recipe_task_a_task() -> None:
    assert set(TASKS) == set(RECIPES)  # a new task needs its recipe in RECIPES, so the tests below cover it
    for objective in typing.get_args(typing.get_type_hints(config.Config)["task"]):
        assert task_of(config.from_dict({"task": objective})) is TASKS[objective]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_task_selects_its_recipe_builds_its_model_and_scores_its_targets(name: str) -> None:
    cfg, task = recipe(name), TASKS[name]
    assert task_of(cfg) is task and task.evaluable == RECIPES[name][1] and task.about
    assert bool(task.lacks) != task.evaluable  # a task that cannot be evaluated says what it lacks
    torch.manual_seed(0)
    model = task.build_model(cfg, SHAPE).eval()
    images = torch.randn(4, 1, 28, 28)
    x = torch.stack([images, images.flip(-1)], 1) if name == "contrastive" else images  # views: B x 2 x C x H x W
    y = torch.tensor([3, 1, 4, 1])
    targets = task.targets(x, y)
    logits = model(x)
    assert logits.shape[0] == targets.shape[0] and int(targets.max()) < logits.shape[1]
    assert torch.isfinite(torch.nn.functional.cross_entropy(logits, targets))
    if task.evaluable:  # a classifier over the data's classes, against the labels
        assert logits.shape == (4, SHAPE.num_classes) and torch.equal(targets, y)
    else:  # each view's positive is the other view of its image
        assert logits.shape == (8, 8) and targets.tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
        assert model(images).shape[0] == 4  # single images: the features that kNN scores


def test_the_pruned_task_builds_the_cut_widths() -> None:
    cut, whole = PRUNE.build_model(recipe("prune"), SHAPE), CLASSIFY.build_model(recipe("classify"), SHAPE)
    assert [b.mlp.fc1.out_features for b in cut.blocks] == [96, 48, 192, 192]
    assert [b.mlp.fc1.out_features for b in whole.blocks] == [192] * 4


def test_a_probe_starts_with_only_its_classifier_learning_and_records_it() -> None:
    cfg = recipe("finetune")
    model = FINETUNE.build_model(cfg, SHAPE)
    assert FINETUNE.start(cfg, model, fresh=True) is None  # no source: the random-features baseline
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    assert FINETUNE.record(cfg, model, None) == {"finetune": {"mode": "linear", "trainable_params": 10 * 96 + 10,
                                                               "source": None}}
    assert CLASSIFY.record(recipe("classify"), model, None) == {}


def test_contrastive_pre_training_refuses_a_source_and_smoothing_by_name() -> None:
    cfg = config.from_dict({**recipe("contrastive").to_dict(), "finetune": {"source": "runs/x"}})
    with pytest.raises(ConfigError, match="finetune.source cannot be used with task: contrastive"):
        CONTRASTIVE.start(cfg, CONTRASTIVE.build_model(cfg, SHAPE), fresh=True)
    smoothed = config.from_dict({**recipe("contrastive").to_dict(), "train": {"label_smoothing": 0.1}})
    assert CONTRASTIVE.label_smoothing(smoothed, mixup=False) == 0.0
    assert "train.label_smoothing=0.1" in CONTRASTIVE.notes(smoothed)[0]
    assert CLASSIFY.label_smoothing(smoothed, mixup=False) == 0.1
    assert CLASSIFY.label_smoothing(smoothed, mixup=True) == 0.0  # soft targets carry their own


def task_comparisons(source: str) -> list[int]:
    """Lines where ``source`` compares a task (``cfg.task``, ``task``, ``x["task"]``, ``x.get("task")``) with
    ``==``, ``!=``, ``in`` or ``not in``."""

    def about_task(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "task" or isinstance(node, ast.Name) and
                node.id == "task" or isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and
                node.slice.value == "task" or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and any(isinstance(a, ast.Constant) and a.value == "task"
                                                    for a in node.args))

    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Compare)
            and any(about_task(side) for side in (node.left, *node.comparators))]


def test_the_comparison_finder_finds_each_form() -> None:
    code = ('a = cfg.task == "contrastive"\nb = "classify" != task\nc = saved["task"] in ("x",)\n'
            'd = conf.get("task") == "contrastive"\ne = cfg.tasks == 1\nf = task.evaluable')
    assert task_comparisons(code) == [1, 2, 3, 4]


def test_nothing_outside_the_registry_and_the_recipe_validation_compares_a_task() -> None:
    allowed = {SRC / "config.py"}
    found = [f"{path.relative_to(SRC)}:{line}" for path in sorted(SRC.rglob("*.py"))
             if path not in allowed and SRC / "tasks" not in path.parents
             for line in task_comparisons(path.read_text())]
    assert not found, f"ask the run's task (sharpvision.tasks) instead of comparing its name: {found}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("open") / "run"
    train(config.load(TINY, [*ONE_EPOCH, "optim.sam=false"]), run, progress=False)
    return run


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.needs_fmnist
def test_open_run_gives_the_trained_model_its_init_and_its_data(trained: Path) -> None:
    run = open_run(trained, overrides=["data.subset_test=32"], keep_init=True)
    saved = ckpt.load(trained)
    assert run.task is CLASSIFY and run.name == "run" and run.epoch == 1 and len(run.bundle.test) == 32
    assert all(torch.equal(v, saved.model[k]) for k, v in run.model.state_dict().items())
    assert not run.model.training and run.init is not None
    again = open_run(trained, keep_init=True).init.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in run.init.state_dict().items())  # the run's seed: one init
    assert not torch.equal(run.init.state_dict()["head.weight"], saved.model["head.weight"])


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("override", ["model.name=mixer_micro", "model.drop_rate=0.1", "task=contrastive",
                                      "contrastive.proj_dim=8"])
def test_an_override_that_changes_the_model_is_refused_by_name(trained: Path, override: str, capsys) -> None:
    with pytest.raises(ckpt.CheckpointError, match=f"override '{override}' changes the model"):
        open_run(trained, overrides=[override])
    line = one_line_error(capsys, ["eval", str(trained), override])
    assert line.startswith("sharpvision eval: error: override") and override in line


@pytest.mark.needs_fmnist
def test_a_run_without_a_classifier_or_without_ema_is_refused_before_its_data_is_read(trained: Path, tmp_path: Path,
                                                                                       capsys) -> None:
    copy = tmp_path / "pretrained"
    shutil.copytree(trained, copy)
    manifest = ckpt.resolve(copy) / "manifest.json"  # the recipe lives in the manifest, outside the checksums
    saved = json.loads(manifest.read_text())
    saved["config"]["task"] = "contrastive"
    manifest.write_text(json.dumps(saved))
    bad_data = f"data.root={tmp_path / 'nothing'}"  # reading the data would fail with another message
    for purpose, argv in (("evaluate", ["eval"]), ("analyse", ["analyze"]), ("prune", ["prune", "--amount", "0.5"])):
        with pytest.raises(ckpt.CheckpointError, match=f"has no classifier to {purpose}; probe or fine-tune it"):
            open_run(copy, overrides=[bad_data], purpose=purpose)
        assert f"no classifier to {purpose}" in one_line_error(capsys, [argv[0], str(copy), *argv[1:]])
    with pytest.raises(ckpt.CheckpointError, match="kept no EMA weights"):
        open_run(trained, ema=True, overrides=[bad_data])
    with pytest.raises(ckpt.CheckpointError, match="no such file or directory"):
        open_run(tmp_path / "missing")
