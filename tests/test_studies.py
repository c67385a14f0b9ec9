"""The studies (studies/: the scripts that train, evaluate or tabulate for a study, writing under benchmarks/results/):
each shows its --help as run from the repository root, they record their results with benchmarks/common.py's helpers
(one copy), and the prune table's summary is computed by hand."""

import importlib
import inspect
import math
import runpy
import shutil
import sys
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).parents[1]
STUDIES = ROOT / "studies"
SCRIPTS = sorted(p for p in STUDIES.glob("*.py") if p.name != "common.py")
FOLDERS = {(ROOT / "benchmarks").resolve(), STUDIES.resolve()}


def _from_the_folders(module: object) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().parent in FOLDERS


@pytest.fixture()
def as_a_study(monkeypatch: pytest.MonkeyPatch):
    """sys.path and sys.modules as `python studies/NAME.py` has them: studies/ first, and no module of benchmarks/ or
    studies/ imported yet (each folder has its common.py); what a test imports from them is dropped after it."""
    for name, module in list(sys.modules.items()):
        if _from_the_folders(module):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(STUDIES))
    monkeypatch.chdir(ROOT)
    yield
    for name, module in list(sys.modules.items()):
        if _from_the_folders(module):
            del sys.modules[name]


def test_the_studies_are_the_scripts_that_train_evaluate_or_tabulate() -> None:
    assert {p.name for p in SCRIPTS} >= {"robustness_table.py", "prune_table.py", "transfer_table.py",
                                         "contrastive_table.py", "convnext_vs_resnet_attack.py", "suite_result.py"}
    assert not any((ROOT / "benchmarks" / p.name).exists() for p in SCRIPTS)  # one place each


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_study_shows_its_help_from_the_repository_root(script: Path, as_a_study, monkeypatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [f"studies/{script.name}", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0 and f"usage: {script.name}" in capsys.readouterr().out


def test_the_studies_record_results_with_the_benchmarks_helpers(as_a_study) -> None:
    """studies/common.py holds no code of its own: device, versions, command, where results go and the paired tests
    are benchmarks/common.py's, so a study's JSON has the shape of a benchmark's."""
    common = importlib.import_module("common")
    assert Path(common.__file__).resolve().parent == STUDIES.resolve()
    shared = (ROOT / "benchmarks" / "common.py").resolve()
    for name in common.__all__:
        value = getattr(common, name)
        if callable(value):
            assert Path(inspect.getsourcefile(value)).resolve() == shared, name
    assert common.RESULTS.resolve() == (ROOT / "benchmarks" / "results").resolve()
    assert set(common.provenance("cpu")) == {"device", "versions", "command"}


def test_the_prune_table_carries_the_sources_accuracy_and_drops_by_hand(as_a_study) -> None:
    """prune_table.summarise: each family's source accuracy in % (mean +- std over seeds) and the drop of a cut paired
    by seed, so the docs only format them."""
    prune_table = importlib.import_module("prune_table")
    keys = [f"{by}@{a}" for by in prune_table.CRITERIA for a in prune_table.AMOUNTS]
    acc = {("vanilla", 0): 0.80, ("vanilla", 1): 0.84, ("sam", 0): 0.82, ("sam", 1): 0.83}
    after = {("vanilla", 0): 0.78, ("vanilla", 1): 0.80, ("sam", 0): 0.815, ("sam", 1): 0.825}  # drops 2, 4 / 0.5, 0.5
    sources = {f"{family}/{s}/seed{seed}": {"test_accuracy": acc[s, seed],
                                            "pruned": {k: {"test_accuracy": after[s, seed]} for k in keys}}
               for family in prune_table.FAMILIES for (s, seed) in acc}
    vit = prune_table.summarise(sources, [0, 1])["vit"]
    assert vit["test_accuracy_pct"]["vanilla"]["mean"] == pytest.approx(82.0)
    assert vit["test_accuracy_pct"]["sam"]["std"] == pytest.approx(stats.tstd([82.0, 83.0]))
    half = vit["drops"]["activity@0.5"]
    assert half["drop_vanilla"]["mean"] == pytest.approx(3.0) and half["drop_sam"]["mean"] == pytest.approx(0.5)
    assert half["sam_minus_vanilla"]["mean"] == pytest.approx((0.5 - 2 + 0.5 - 4) / 2)
    assert vit["largest_activity_amount_within_1pt"] == {"vanilla": [0.0, 0.0], "sam": [0.9, 0.9]}


def test_ntk_at_init_rebuilds_a_cells_initialisation_from_its_recipe(tmp_path: Path, as_a_study, monkeypatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without a checkpoint, the study rebuilds a cell's initial weights from its recipe and seed: the kappa it
    measures is the one the suite runner measured on the run's own init. A first measurement (here made infinite,
    as a zero head made the Mixer's) is kept beside the new one, and a cell re-measured once is left alone."""
    import json

    import torch
    import yaml

    from sharpvision import experiments
    spec = {"name": "ntk-test", "recipe": "tiny.yaml",
            "overrides": ["schedule.epochs=1", "schedule.warmup_epochs=0", "data.subset_train=32",
                          "data.subset_test=32", "data.batch_size=32", "data.val_fraction=0.002", "train.threads=1",
                          "model.name=vit_micro"],
            "axes": {"seed": [3]}, "analysis": ["ntk"], "analysis_settings": {"ntk_n": 12, "batch_size": 12}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    suite, out = experiments.load_suite(tmp_path / "s.yaml"), tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiments.run_suite(suite, out, suite.cells(), say=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    cell = next((out / "cells").iterdir())
    shutil.rmtree(cell / "run" / "checkpoints")  # as committed cells are: no weights left
    measured = json.loads((cell / "result.json").read_text())["analysis"]["ntk_kappa_at_init"]
    for path, keys in ((cell / "result.json", ("analysis", "ntk_kappa_at_init")),
                       (cell / "analysis" / "ntk.json", ("at_init", "kappa"))):
        saved = json.loads(path.read_text())
        saved[keys[0]][keys[1]] = math.inf
        path.write_text(json.dumps(saved))
    monkeypatch.setattr(sys, "argv", ["studies/ntk_at_init.py", str(out)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(STUDIES / "ntk_at_init.py"), run_name="__main__")
    assert exit_.value.code == 0 and "kappa at init inf ->" in capsys.readouterr().out
    result = json.loads((cell / "result.json").read_text())
    assert result["analysis"]["ntk_kappa_at_init"] == pytest.approx(measured, rel=1e-9)
    assert result["remeasured"]["ntk_kappa_at_init"]["before"] == "inf"  # strict JSON
    assert json.loads((cell / "analysis" / "ntk.first.json").read_text())["at_init"]["kappa"] == math.inf
    assert json.loads((cell / "analysis" / "ntk.json").read_text())["at_init"]["kappa"] == pytest.approx(measured,
                                                                                                         rel=1e-9)
    with pytest.raises(SystemExit):
        runpy.run_path(str(STUDIES / "ntk_at_init.py"), run_name="__main__")
    assert "already re-measured, kept" in capsys.readouterr().out


def test_the_robustness_table_reads_only_as_reproduce_does(tmp_path: Path, as_a_study, monkeypatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Repeated filters on one axis are alternatives (the commands the docs quote), merged into reproduce's
    ``AXIS=A,B`` form; a label the suite does not have stops the study with one line naming it, before any work."""
    import yaml
    filters = runpy.run_path(str(STUDIES / "robustness_table.py"))["filters"]
    assert filters(["setting=vanilla", "seed=3", "setting=sam"]) == ["setting=vanilla,sam", "seed=3"]
    assert filters(["model=vit,resnet"]) == ["model=vit,resnet"]
    spec = {"name": "only-test", "recipe": "tiny.yaml", "axes": {"seed": [3, 4], "model.name": ["vit_micro"]}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(sys, "argv", ["studies/robustness_table.py", str(tmp_path), "--only", "seed=5"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(STUDIES / "robustness_table.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "'5'" in err and "seed" in err
    assert not (tmp_path / "cells").exists() and not (tmp_path / "tables").exists()
