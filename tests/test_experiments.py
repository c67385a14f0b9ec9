"""Experiment suites: the grid, filters and shards, locks, and a resumable run that aggregates over seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sharpvision import experiments
from sharpvision.cli import main
from sharpvision.experiments import SuiteError, load_suite, run_cell, run_suite, select
from sharpvision.experiments.locks import CellLock

TINY_RUN = ["schedule.epochs=2", "schedule.warmup_epochs=0", "data.subset_train=64", "data.subset_test=64",
            "data.batch_size=32", "train.log_every=1"]


def write_suite(tmp_path: Path, **changes: object) -> Path:
    suite = {"name": "t", "recipe": "tiny.yaml", "overrides": TINY_RUN,
             "axes": {"setting": {"vanilla": {"optim.sam": False}, "sam": {"optim.sam": True}}, "seed": [0, 1]}}
    suite.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_the_grid_is_the_product_of_the_axes_in_order(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, axes={"model": {"vit": {"model.name": "vit_micro"},
                                                             "resnet": {"model.name": "resnet_micro"}},
                                                   "data.fraction": [0.5, 1.0], "seed": [0, 1, 2]}))
    cells = suite.cells()
    assert len(cells) == 2 * 2 * 3
    assert cells[0].key == "model=vit,data.fraction=0.5,seed=0"
    assert cells[-1].key == "model=resnet,data.fraction=1.0,seed=2"
    assert cells[0].overrides[-3:] == ("model.name=vit_micro", "data.fraction=0.5", "seed=0")
    cfg = suite.recipe_of(cells[-1])
    assert (cfg.model.name, cfg.data.fraction, cfg.seed, cfg.name) == ("resnet_micro", 1.0, 2, "t")


@pytest.mark.parametrize(("changes", "message"), [
    ({"axes": {"model": [1, 2]}}, "axis 'model' lists values, so it must be a recipe field"),
    ({"axes": {"optim.rho": [-1.0]}}, r"cell optim.rho=-1.0: .*optim.rho: -1.0 is out of range"),
    ({"axes": {"setting": {"x": "optim.sam=true"}}}, "axes.setting.x must map fields to values"),
    ({"analysis": ["hessain"]}, "analysis hessain unknown"),
    ({"extra": 1}, "unknown key"),
    ({"recipe": "no_such_recipe.yaml"}, "no_such_recipe.yaml: no such file"),
    ({"axes": {"modle.name": ["vit_micro"]}}, r"cell modle.name=vit_micro: .*modle"),
    ({"grids": {"t2": {"modle": ["vit"]}}}, r"grids.t2: 'modle' is not an axis \(setting, seed\)"),
    ({"grids": {"t2": {"setting": ["sma"]}}}, r"grids.t2.setting: sma not a label of setting \(vanilla, sam\)"),
    ({"grids": {"t2": {"setting": []}}}, "grids.t2.setting must be a non-empty list"),
    ({"grids": {"t2": {"analysis": ["hessain"]}}}, "analysis hessain unknown"),
    ({"analysis_settings": {"sampel": 8}}, "analysis_settings: .*sampel.* \\(known: sample, "),
])
def test_a_bad_suite_is_refused_naming_the_culprit(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write_suite(tmp_path, **changes))


def test_grids_share_their_common_cells_and_keep_the_first_axis_slowest(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, axes={
        "seed": [0, 1],
        "model": {"vit": {"model.name": "vit_micro"}, "resnet": {"model.name": "resnet_micro"}},
        "setting": {"vanilla": {"optim.sam": False}, "sam": {"optim.sam": True}, "aug": {"data.augment": "strong"}},
        "data.fraction": [0.25, 1.0]},
        grids={"table2": {"data.fraction": [1.0], "setting": ["vanilla", "sam"], "analysis": ["norms"]},
               "table4": {"model": ["vit"]}},
        analysis=["sparsity"], analysis_settings={"sample": 64}))
    table2, table4 = suite.grid_cells("table2"), suite.grid_cells("table4")
    assert (len(table2), len(table4)) == (2 * 2 * 2, 2 * 3 * 2)
    shared = {c.key for c in table2} & {c.key for c in table4}
    assert shared == {f"seed={s},model=vit,setting={st},data.fraction=1.0" for s in "01" for st in ("vanilla", "sam")}
    cells = suite.cells()
    assert len(cells) == len(table2) + len(table4) - len(shared) == len({c.key for c in cells})
    assert [c.label("seed") for c in cells] == ["0"] * (len(cells) // 2) + ["1"] * (len(cells) // 2)
    assert cells[0] == table2[0]  # within a seed, the first grid's cells come first
    vit_table2 = next(c for c in cells if c.key == "seed=0,model=vit,setting=sam,data.fraction=1.0")
    vit_only4 = next(c for c in cells if c.key == "seed=0,model=vit,setting=aug,data.fraction=0.25")
    assert suite.analysis_of(vit_table2) == ("sparsity", "norms")
    assert suite.analysis_of(vit_only4) == ("sparsity",)
    assert suite.analysis_settings == {"sample": 64}


def test_shipped_suites_load_by_name_and_a_missing_one_lists_them() -> None:
    assert load_suite("paper-tiny").name == "paper-tiny"
    with pytest.raises(SuiteError, match="shipped: .*paper-tiny"):
        load_suite("paper-nope")


def test_only_filters_and_shards_split_the_cells_without_overlap(tmp_path: Path) -> None:
    cells = load_suite(write_suite(tmp_path)).cells()
    assert [c.key for c in select(cells, ["setting=sam"], None)] == ["setting=sam,seed=0", "setting=sam,seed=1"]
    assert [c.key for c in select(cells, ["setting=sam,vanilla", "seed=1"], None)] == ["setting=vanilla,seed=1",
                                                                                      "setting=sam,seed=1"]
    shards = [select(cells, [], f"{i}/3") for i in (1, 2, 3)]
    assert sorted(c.key for s in shards for c in s) == sorted(c.key for c in cells)
    assert sum(len(s) for s in shards) == len(cells)
    for bad, message in (("3/2", "1 <= I <= N"), ("0/2", "1 <= I <= N"), ("a/b", "expected I/N")):
        with pytest.raises(SuiteError, match=message):
            select(cells, [], bad)
    for bad in ("setting=asam", "setting=sam,asam"):
        with pytest.raises(SuiteError, match="setting has no value 'asam'"):
            select(cells, [bad], None)
    with pytest.raises(SuiteError, match="expected AXIS=LABEL"):
        select(cells, ["model=vit"], None)


def test_a_lock_is_exclusive_and_a_dead_owners_lock_is_taken_over(tmp_path: Path) -> None:
    first, second = CellLock(tmp_path / ".lock"), CellLock(tmp_path / ".lock")
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "since": 0}))
    assert CellLock(tmp_path / ".lock").acquire()  # its owner is gone
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": "another-machine", "pid": 1, "since": 0}))
    assert not CellLock(lock, stale_after=60).acquire()  # alive as far as we can tell
    old = time.time() - 120
    os.utime(lock, (old, old))
    assert CellLock(lock, stale_after=60).acquire()  # its heartbeat stopped two minutes ago
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # nothing left of the stale ones


@pytest.mark.needs_fmnist
def test_a_suite_runs_resumes_and_aggregates_over_seeds(tmp_path: Path, monkeypatch) -> None:
    suite = load_suite(write_suite(tmp_path, analysis=["norms"]))
    out = tmp_path / "out"
    one = suite.cells()[0]
    from sharpvision.train import train
    train(suite.recipe_of(one), out / "cells" / one.folder / "run", stop_after_epoch=1, progress=False)  # killed
    said: list[str] = []
    results = run_suite(suite, out, suite.cells(), say=said.append)
    assert results["cells_done"] == 4 and len(said) == 4
    group = results["groups"]["setting=sam"]
    assert group["n"] == 2 and group["labels"] == {"setting": "sam"}
    accs = [results["cells"][f"setting=sam,seed={s}"]["metrics"]["test_accuracy"] for s in (0, 1)]
    assert group["metrics"]["test_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert "weight_norm" in group["metrics"] and json.loads((out / "results.json").read_text()) == results
    resumed = json.loads((out / "cells" / one.folder / "result.json").read_text())
    assert [r["epoch"] for r in resumed["curve"]] == [0, 1] and resumed["summary"]["epochs"] == 2

    stamp = (out / "cells" / one.folder / "result.json").stat().st_mtime_ns
    assert run_cell(suite, one, out / "cells" / one.folder) == "done"  # finished cells are skipped
    assert (out / "cells" / one.folder / "result.json").stat().st_mtime_ns == stamp

    changed = load_suite(write_suite(tmp_path, analysis=["norms"], overrides=[*TINY_RUN, "optim.lr=0.01"]))
    with pytest.raises(SuiteError, match=r"holds a different suite \(overrides"):
        run_suite(changed, out, changed.cells())


@pytest.mark.needs_fmnist
def test_a_failing_cell_is_retried_once_recorded_and_the_others_go_on(tmp_path: Path, monkeypatch) -> None:
    from sharpvision.experiments import runner
    suite = load_suite(write_suite(tmp_path, axes={"seed": [0, 1]}))
    real, calls = runner.train, []

    def flaky(cfg, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(cfg.seed)
        if cfg.seed == 0:
            raise RuntimeError("disk full")
        return real(cfg, *args, **kwargs)
    monkeypatch.setattr(runner, "train", flaky)
    results = run_suite(suite, tmp_path / "out", suite.cells(), say=lambda _: None)
    assert calls == [0, 0, 1] and results["cells_done"] == 1
    error = json.loads((tmp_path / "out" / "cells" / "seed=0" / "error.json").read_text())
    assert error["attempt"] == 2 and error["error"] == "RuntimeError: disk full"
    assert experiments.cell_status(tmp_path / "out" / "cells" / "seed=0") == "failed"


def test_the_eta_counts_only_the_cells_still_to_train(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from sharpvision.experiments import runner
    suite = load_suite(write_suite(tmp_path, axes={"seed": [0, 1, 2, 3]}))
    out = tmp_path / "out"
    for seed in (1, 2):  # finished by another shard or an earlier sitting
        (out / "cells" / f"seed={seed}").mkdir(parents=True)
        (out / "cells" / f"seed={seed}" / "result.json").write_text("{}")
    clock = iter([0.0, 60.0, 60.0, 60.0, 180.0])  # the first cell trains in a minute, the last in two
    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=lambda: next(clock), time_ns=time.time_ns))
    monkeypatch.setattr(runner, "run_cell", lambda suite, cell, folder, retries: runner.cell_status(folder)
                        .replace("todo", "trained"))
    monkeypatch.setattr(runner, "aggregate", lambda suite, out: {})
    said: list[str] = []
    run_suite(suite, out, suite.cells(), say=said.append)
    assert said == ["[1/4] seed=0: trained, about 1 min left", "[2/4] seed=1: done, about 1 min left",
                    "[3/4] seed=2: done, about 1 min left", "[4/4] seed=3: trained, about 0 min left"]


def test_cli_refuses_bad_shards_and_filters_in_one_line(tmp_path: Path, capsys) -> None:
    path = write_suite(tmp_path)
    assert main(["reproduce", str(path), "--shard", "3/2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shard '3/2'" in err[0] and not (tmp_path / "o").exists()
    assert main(["reproduce", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


@pytest.mark.slow  # submitit's local executor starts a process per cell
@pytest.mark.needs_fmnist
def test_cells_run_as_submitit_jobs_with_the_local_executor(tmp_path: Path) -> None:
    """The SLURM path with submitit's local executor: one job per cell, a job reporting 'done' for a finished cell."""
    pytest.importorskip("submitit")
    from sharpvision.experiments.submit import submit_cells
    suite = load_suite(write_suite(tmp_path, axes={"seed": [0, 1]}))
    said: list[str] = []
    results = submit_cells(suite, tmp_path / "out", suite.cells(), "local", timeout_min=10, say=said.append)
    assert results["cells_done"] == 2 and said[0].startswith("submitted 2 job(s) to local")
    assert said[1:] == ["[1/2] seed=0: trained", "[2/2] seed=1: trained"]
    assert len([p for p in (tmp_path / "out" / "submitit").iterdir() if p.name.isdigit()]) == 2  # a log folder each
    again: list[str] = []
    submit_cells(suite, tmp_path / "out", suite.cells()[:1], "local", timeout_min=10, say=again.append)
    assert again[1:] == ["[1/1] seed=0: done"]


@pytest.mark.needs_fmnist
def test_dry_run_times_each_setup_once_and_lists_every_cell(tmp_path: Path, capsys) -> None:
    from sharpvision.experiments.estimate import training_seconds
    # a warmup longer than the timed pass's one epoch must not make the pass's recipe invalid
    suite = load_suite(write_suite(tmp_path, overrides=[*TINY_RUN, "schedule.epochs=3", "schedule.warmup_epochs=2"]))
    seconds = training_seconds(suite, suite.cells())
    assert set(seconds) == {c.key for c in suite.cells()} and all(v > 0 for v in seconds.values())
    for setting in ("vanilla", "sam"):  # seeds share their setup's timed pass and step count
        assert seconds[f"setting={setting},seed=0"] == seconds[f"setting={setting},seed=1"]
    finished = tmp_path / "o" / "cells" / suite.cells()[0].folder  # a finished cell is listed, not timed
    finished.mkdir(parents=True)
    (finished / "result.json").write_text("{}")
    assert main(["reproduce", str(tmp_path / "suite.yaml"), "--dry-run", "--estimate", "--out",
                 str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out[:1]] == [[suite.cells()[0].key, "done", "-"]]
    assert [line.split()[:2] for line in out[1:4]] == [[c.key, "todo"] for c in suite.cells()[1:]]
    assert out[-1].startswith("4 cells: 1 done, 3 todo; about ") and "4 timed training steps of each of 2 setups" \
        in out[-1]


def test_cell_metrics_take_lambda_max_from_training_in_every_cell() -> None:
    """One instrument in every cell of a suite: the loop's estimate; an analysis piece's is kept beside it."""
    from sharpvision.experiments.aggregate import cell_metrics
    curve = [{"epoch": 0, "val_accuracy": 0.5, "lambda_max": 90.0, "lambda_max_matched": 70.0, "matched_epoch": 0},
             {"epoch": 1, "val_accuracy": 0.7, "lambda_max": 40.0}]
    result = {"summary": {"test_accuracy": 0.8, "model": "vit_micro"}, "curve": curve}
    assert cell_metrics(result) == {"test_accuracy": 0.8, "lambda_max": 40.0, "lambda_max_matched": 70.0,
                                    "matched_epoch": 0.0, "best_val_accuracy": 0.7}
    both = cell_metrics(result | {"analysis": {"lambda_max": 12.5}})
    assert both["lambda_max"] == 40.0 and both["hessian_lambda_max"] == 12.5


@pytest.mark.parametrize("name", ["paper-cpu", "paper-gpu"])
def test_the_paper_suites_give_every_claim_its_runs(name: str) -> None:
    """Once every cell of a shipped paper suite has finished, every claim is judged: none is 'not measured' except
    the one read from the robustness evaluation that runs on the finished cells afterwards. The claims look cells
    up by label, so this checks the suite's labels, grids and per-grid analysis against what each claim reads."""
    from sharpvision.experiments import claims
    suite = load_suite(name)
    produces = {"ntk": "ntk_kappa_at_init", "sparsity": "active_fraction_first_block"}
    cells = {}
    for cell in suite.cells():
        seed = int(cell.label("seed"))
        metrics = {"test_accuracy": 0.8 + 0.01 * seed, "lambda_max": 10.0 + seed}
        metrics |= {produces[p]: 1.0 + seed for p in suite.analysis_of(cell) if p in produces}
        cells[cell.key] = {"labels": dict(cell.labels), "metrics": metrics}
    results = {"suite": name, "axes": {a: list(v) for a, v in suite.axes.items()}, "cells": cells}
    verdicts = {c["id"]: c for c in claims.evaluate(results)["claims"]}
    unmeasured = {k: c.get("why") for k, c in verdicts.items() if c["verdict"] == "not measured"}
    # corruption accuracy is `sharpvision eval --corruptions` on each finished cell, after the suite
    assert list(unmeasured) == ["corruption_gain"] and "mean_corruption_accuracy" in unmeasured["corruption_gain"]


def test_eval_metrics_read_what_sharpvision_eval_wrote_into_a_cell(tmp_path: Path) -> None:
    from sharpvision.experiments.aggregate import eval_metrics
    assert eval_metrics(tmp_path) == {}  # not evaluated: no robustness figures, and no error
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "corruptions.json").write_text(json.dumps(
        {"clean_accuracy": 0.8, "mean_corruption_accuracy": 0.55, "accuracy": {}}))
    (tmp_path / "eval" / "attack_pgd_linf.json").write_text(json.dumps(
        {"attack": "pgd", "norm": "linf", "accuracy": {"0.0": 0.8, "0.02": 0.4, "0.05": 0.1}}))
    assert eval_metrics(tmp_path) == {"corruption_clean_accuracy": 0.8, "mean_corruption_accuracy": 0.55,
                                      "pgd_linf_accuracy@0.02": 0.4, "pgd_linf_accuracy@0.05": 0.1}


def test_a_shards_closing_line_counts_its_selection_from_the_directory_at_the_end(tmp_path: Path, capsys,
                                                                                  monkeypatch) -> None:
    """Two processes share a suite directory. The one that ends first counts what the directory holds when it ends,
    for the cells it was asked to run: a cell the other process finished meanwhile is done, one it is still
    training is said to be running there; the suite's total stands beside it."""
    from sharpvision.experiments import runner
    path = write_suite(tmp_path, axes={"seed": [0, 1, 2, 3]})
    out = tmp_path / "out"
    (out / "cells" / "seed=2").mkdir(parents=True)
    other = CellLock(out / "cells" / "seed=2" / ".lock")  # the other process trains seed=2, in shard 1/2 too
    assert other.acquire()

    def run_cell(suite, cell, folder, retries):  # noqa: ANN001, ANN202
        folder.mkdir(parents=True, exist_ok=True)
        lock = CellLock(folder / ".lock")
        if not lock.acquire():
            return "busy"
        (folder / "result.json").write_text("{}")
        (out / "cells" / "seed=1" / "result.json").parent.mkdir(parents=True)
        (out / "cells" / "seed=1" / "result.json").write_text("{}")  # the other shard's cell, done meanwhile
        lock.release()
        return "trained"
    monkeypatch.setattr(runner, "run_cell", run_cell)
    monkeypatch.setattr(runner, "aggregate", lambda suite, out: {"cells_done": 2, "cells_total": 4})
    monkeypatch.setattr(runner, "write_results", lambda out, results: None)
    try:
        assert main(["reproduce", str(path), "--shard", "1/2", "--out", str(out)]) == 0
    finally:
        other.release()
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"1 of the 2 selected cells done, 1 running in another process (2 of the suite's 4 done); results in "
        f"{out / 'results.json'}")


def test_a_dry_run_lists_cells_and_states_at_once_and_times_only_when_asked(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    """A dry run reads the directory and trains nothing; the timed cost estimate is --estimate's, which says how
    it was made. --estimate without --dry-run is one line."""
    from sharpvision.experiments import estimate

    def no_training(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a dry run trained")
    monkeypatch.setattr(estimate, "train", no_training)
    suite = load_suite(write_suite(tmp_path))
    done = tmp_path / "o" / "cells" / suite.cells()[1].folder
    done.mkdir(parents=True)
    (done / "result.json").write_text("{}")
    running = tmp_path / "o" / "cells" / suite.cells()[2].folder
    running.mkdir(parents=True)
    lock = CellLock(running / ".lock")
    assert lock.acquire()
    try:
        assert main(["reproduce", str(tmp_path / "suite.yaml"), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    finally:
        lock.release()
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out[:4]] == [[c.key, state] for c, state in
                                                  zip(suite.cells(), ("todo", "done", "running", "todo"))]
    assert out[4] == "4 cells: 1 done, 1 running, 2 todo (--estimate: time a few steps of each setup for a cost)"
    assert main(["reproduce", str(tmp_path / "suite.yaml"), "--estimate"]) == 2
    assert capsys.readouterr().err.splitlines() == ["sharpvision reproduce: error: --estimate needs --dry-run"]
