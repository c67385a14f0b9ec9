"""The house rules the code relies on: imports go one way, importing is cheap, no hidden global state, one error
type for what users can fix, renamed recipe fields keep working, and an installed wheel finds its recipes."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONFIGS, ROOT, TINY

from sharpvision import config, errors, runtime
from sharpvision.cli import main

SRC = ROOT / "src" / "sharpvision"
SMALL = ["data.subset_train=128", "data.subset_test=64", "schedule.epochs=1", "train.log_every=1"]

# Lower layers never import higher ones. A run's task (tasks) is asked by open_run (runs), which eval and analyze
# open runs with; train uses analysis (lambda_max during training) and evaluate (test accuracy), never the reverse;
# commands (prune, eval, analyze: what the CLI adds to the library) use all of them; the report reads the suites
# (experiments).
LAYERS = [
    {"errors", "stats", "paper"},
    {"config"},
    {"passes", "checkpoint", "figures"},
    {"flops", "memory", "models", "optim", "data"},
    {"runtime"},
    {"tasks"},
    {"runs"},
    {"analysis", "evaluate"},
    {"train"},
    {"experiments", "demo", "commands"},
    {"report"},
    {"cli"},
]


def unit(module: str) -> str:
    """``sharpvision.train.loop`` -> ``train``: the subpackage or top-level module an import belongs to."""
    return module.split(".")[1]


def import_graph() -> dict[str, set[str]]:
    """Unit -> the units its modules import (anywhere in the file, lazy imports inside functions included)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        if rel.name in ("__init__", "__main__") and rel.parent == Path("sharpvision"):
            continue
        src = unit(".".join(rel.parts))
        targets = graph.setdefault(src, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                if name.startswith("sharpvision."):
                    targets.add(unit(name))
                elif name == "sharpvision" and isinstance(node, ast.ImportFrom):  # from sharpvision import data
                    targets.update(a.name for a in node.names)
        targets.discard(src)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_between_subpackages() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_go_one_way() -> None:
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    graph = import_graph()
    assert set(graph) <= set(layer), f"a new unit needs a layer in LAYERS: {sorted(set(graph) - set(layer))}"
    upward = [f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts if layer[dst] >= layer[src]]
    assert not upward, f"imports against the layering: {upward}"


def reads_the_command_line(node: ast.AST) -> bool:
    """An import of argparse, or sys.argv read (``sys.argv`` or ``from sys import argv``)."""
    if isinstance(node, ast.Import):
        return any(a.name == "argparse" for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.module == "argparse" or node.module == "sys" and any(a.name == "argv" for a in node.names)
    return (isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name)
            and node.value.id == "sys")


def test_building_blocks_hold_no_command() -> None:
    """A unit below commands is a library: it neither parses flags nor reads the command line; a subcommand's own
    parts go in sharpvision.commands, and the CLI passes its invocation down as a string."""
    top = next(i for i, names in enumerate(LAYERS) if "commands" in names)
    below = set().union(*LAYERS[:top])
    found = [f"{path.relative_to(SRC)}:{node.lineno}" for path in SRC.rglob("*.py")
             if unit(".".join(path.relative_to(SRC.parent).with_suffix("").parts)) in below
             for node in ast.walk(ast.parse(path.read_text())) if reads_the_command_line(node)]
    assert not found, f"command-line parsing in a building block (its place is sharpvision.commands): {found}"
    for code in ("import argparse", "from sys import argv", "sys.argv[1:]"):  # the check sees each way of doing it
        assert any(map(reads_the_command_line, ast.walk(ast.parse(code)))), code


def imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    return set(out.stdout.split())


def test_importing_the_package_or_listing_models_does_not_load_the_analysis_stack() -> None:
    assert not {"torch", "sharpvision.analysis", "sharpvision.train"} & imported_after("import sharpvision")
    after_models = imported_after("from sharpvision.cli import main; main(['models'])")
    assert "sharpvision.models" in after_models
    assert not {"sharpvision.analysis", "sharpvision.train", "matplotlib", "tensorboard"} & after_models


def test_subpackages_load_on_first_use() -> None:
    code = "import sharpvision as sv; assert sv.optim.SAM and sv.models.create and sv.passes.frozen_bn_stats"
    assert "sharpvision.optim" in imported_after(code)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import sharpvision
        sharpvision.nope  # noqa: B018


def test_every_error_we_raise_on_purpose_is_a_sharpvision_error() -> None:
    from sharpvision.checkpoint import CheckpointError
    from sharpvision.data import DataError
    from sharpvision.models import UnknownModelError
    from sharpvision.train import RunDirError, TrainingDiverged
    for cls in (config.ConfigError, DataError, CheckpointError, RunDirError, TrainingDiverged, UnknownModelError):
        assert issubclass(cls, errors.SharpvisionError), cls


def test_cli_prints_user_errors_in_one_line_and_keeps_the_traceback_of_bugs(monkeypatch, capsys) -> None:
    from sharpvision import cli
    assert main(["train", str(TINY), "optim.rho=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sharpvision train: error: recipe") and "optim.rho" in err[0]

    def buggy(args: object) -> int:
        raise ValueError("an internal bug")
    monkeypatch.setattr(cli, "cmd_models", buggy)
    with pytest.raises(ValueError, match="an internal bug"):  # not swallowed into one line
        main(["models"])


def test_threads_are_put_back_and_seeded_blocks_leave_the_global_generators_alone() -> None:
    before = torch.get_num_threads()
    with runtime.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with runtime.seeded(0):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected) and not torch.equal(inside, expected)
    torch.manual_seed(0)
    assert torch.equal(inside, torch.rand(3))  # inside the block: the draws of seed_everything(0)


@pytest.mark.needs_fmnist
def test_training_and_loading_a_run_leave_threads_and_random_streams_as_they_were(tmp_path: Path) -> None:
    from sharpvision.analysis.run import load_subject
    from sharpvision.train import train
    before = torch.get_num_threads()
    train(config.load(TINY, [*SMALL, "train.threads=1"]), tmp_path / "run", progress=False)
    assert torch.get_num_threads() == before
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    load_subject(tmp_path / "run")
    assert torch.equal(torch.rand(4), expected)


def test_renamed_fields_keep_working_with_a_warning() -> None:
    old = {"train": {"sharpness_every": 2, "sharpness_sample": 64}}
    with pytest.warns(FutureWarning, match="train.sharpness_every is deprecated: it is now train.lambda_max_every"):
        cfg = config.from_dict(old)
    assert (cfg.train.lambda_max_every, cfg.train.lambda_max_sample) == (2, 64)
    with pytest.raises(config.ConfigError, match="both are given"):
        config.from_dict({"train": {"sharpness_every": 2, "lambda_max_every": 3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn nothing
        assert config.from_dict({"train": {"lambda_max_every": 2}}).train.lambda_max_every == 2


@pytest.mark.needs_fmnist
def test_a_run_saved_under_the_old_field_names_resumes(tmp_path: Path) -> None:
    from sharpvision.train import train
    args = [*SMALL, "schedule.epochs=2", "train.lambda_max_every=2", "train.lambda_max_sample=32"]
    cfg = config.load(TINY, args)
    train(cfg, tmp_path / "run", stop_after_epoch=1, progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    saved["train"]["sharpness_every"] = saved["train"].pop("lambda_max_every")  # as an older release wrote it
    saved["train"]["sharpness_sample"] = saved["train"].pop("lambda_max_sample")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.warns(FutureWarning, match="sharpness_every"):
        summary = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert summary["epochs"] == 2


def test_recipes_are_found_by_their_shipped_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a folder without configs/
    shipped = config.shipped_recipes()
    assert shipped.is_dir() and CONFIGS.resolve() == shipped.resolve()  # ./configs links here
    for name in ("fmnist/vit_sam.yaml", "configs/fmnist/vit_sam.yaml"):
        assert config.find_recipe(name) == shipped / "fmnist" / "vit_sam.yaml"
    assert config.find_recipe("no/such.yaml") == Path("no/such.yaml")  # load() then names it as missing
    with pytest.raises(config.ConfigError, match="no/such.yaml: no such file"):
        config.load("no/such.yaml")


def test_an_installed_wheel_runs_the_demo_and_finds_its_recipes(tmp_path: Path) -> None:
    """pip install . (not editable): the recipes travel inside the package; nothing reads the checkout."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(tree)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("sharpvision-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    away = tmp_path / "elsewhere"  # a folder without configs/
    away.mkdir()
    demo = subprocess.run([sys.executable, "-m", "sharpvision", "demo", "--help"], cwd=away, env=env,
                          capture_output=True, text=True)
    assert demo.returncode == 0 and "usage: sharpvision demo" in demo.stdout
    code = ("import sharpvision, sharpvision.config as c; print(sharpvision.__file__); "
            "print(c.find_recipe('demo.yaml')); print(c.load('demo.yaml').name); "
            "print(c.load('configs/fmnist/vit_sam.yaml').optim.sam)")
    out = subprocess.run([sys.executable, "-c", code], cwd=away, env=env, capture_output=True, text=True, check=True)
    package, recipe, name, sam = out.stdout.split()
    site = str(tmp_path / "site")
    assert package.startswith(site) and recipe.startswith(site)  # the installed copy, not the checkout
    expected = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    assert name == expected["name"] and sam == "True"
