"""`sharpvision analyze`: the runner's results agree with the library, files are written, bad input is named."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from helpers import ONE_EPOCH, TINY
from torch import nn

from sharpvision import config, optim
from sharpvision.analysis import hessian_eigenvalues, sample_batches
from sharpvision.analysis.run import FIRST_LOOK, PIECES, analyze, compare, load_subject
from sharpvision.cli import main
from sharpvision.config import ConfigError
from sharpvision.runtime import device_name
from sharpvision.train import session, train

# half of ONE_EPOCH's images and 2 steps: the analyses only need some trained model, and run on its test subset
FAST = [*ONE_EPOCH, "data.subset_train=128", "data.subset_test=64", "train.max_steps_per_epoch=2"]

pytestmark = pytest.mark.needs_fmnist


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny trained ViT, and its weights at initialization captured inside the training loop."""
    captured = {}
    real = optim.build_optimizer

    def capture(model, cfg, *args, **kwargs):
        captured.update({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, cfg, *args, **kwargs)

    session.build_optimizer = capture
    try:
        out = tmp_path_factory.mktemp("analyze") / "vit"
        train(config.load(TINY, FAST), out, progress=False)
    finally:
        session.build_optimizer = real
    return out, captured


def test_subject_rebuilds_the_runs_initialization(run) -> None:
    out, init = run
    subject = load_subject(out)
    assert all(torch.equal(v, init[k]) for k, v in subject.init.state_dict().items())
    assert not all(torch.equal(v, init[k]) for k, v in subject.model.state_dict().items())  # trained weights


def test_runner_matches_the_library_and_writes_files(run, tmp_path: Path) -> None:
    out, _ = run
    subject = load_subject(out)
    results = analyze(subject, ["hessian", "sparsity", "norms", "attention", "ntk"], tmp_path, sample=64,
                      batch_size=32, ntk_n=16, progress=lambda _: None)
    data = sample_batches(subject.bundle.train_plain, 64, 32, seed=0)
    direct = hessian_eigenvalues(subject.model, nn.functional.cross_entropy, data, k=1, seed=0)
    assert results["hessian"]["lambda_max"] == pytest.approx(direct["eigenvalues"][0], rel=1e-6)
    saved = json.loads((tmp_path / "hessian.json").read_text())
    assert saved["settings"]["n"] == 64 and saved["settings"]["mode"] == "eval" and saved["epoch"] == 1
    assert set(saved["per_block"]) == {"stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"}
    ntk = json.loads((tmp_path / "ntk.json").read_text())["at_init"]
    assert ntk["n"] == 16 and ntk["reduction"] == "sum" and ntk["kappa"] >= 1
    for png in ("hessian_per_block.png", "sparsity.png", "norms.png", "attention.png"):
        assert (tmp_path / png).stat().st_size > 1000, png


def test_cli_analyze_prints_a_table_and_names_bad_input(run, capsys) -> None:
    out, _ = run
    assert main(["analyze", str(out), "--what", "norms,sparsity", "--sample", "32"]) == 0
    printed = capsys.readouterr().out
    assert "active neurons" in printed and "weight norm" in printed and (out / "analysis" / "norms.json").exists()
    assert main(["analyze", str(out), "--what", "hessain"]) == 2
    assert "--what: unknown piece(s) hessain" in capsys.readouterr().err


def test_attention_on_a_model_without_it_is_a_clear_error(tmp_path: Path, capsys) -> None:
    train(config.load(TINY, [*FAST, "model.name=resnet_micro"]), tmp_path / "cnn", progress=False)
    assert main(["analyze", str(tmp_path / "cnn"), "--what", "attention"]) == 2
    assert "has no attention; attention maps need a ViT" in capsys.readouterr().err


def test_compare_writes_numbers_and_side_by_side_figures(run, tmp_path: Path) -> None:
    out, _ = run
    subject = load_subject(out)
    results = analyze(subject, ["hessian", "norms"], tmp_path / "a", sample=32, batch_size=32,
                      progress=lambda _: None)
    written = compare({"base": results, "sam": results}, tmp_path / "cmp", command="sharpvision analyze a b")
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["command"] == "sharpvision analyze a b"
    assert saved["runs"]["base"]["devices"] == [device_name(torch.device("cpu"))]
    saved = saved["runs"]
    assert saved["base"]["numbers"]["lambda_max"] == pytest.approx(results["hessian"]["lambda_max"])
    assert saved["sam"]["numbers"]["weight_norm"] == pytest.approx(results["norms"]["total"])
    assert "trace" not in saved["base"]["numbers"]  # pieces not run are absent, not zero
    assert {p.name for p in written} == {"compare.json", "hessian_per_block.png", "norms.png"}


def test_reuse_loads_saved_pieces_for_the_same_epoch_only(run, tmp_path: Path) -> None:
    out, _ = run
    subject = load_subject(out)
    first = analyze(subject, ["norms"], tmp_path, sample=32, batch_size=32, progress=lambda _: None)
    saved = json.loads((tmp_path / "norms.json").read_text())
    saved["total"] = -1.0  # a marker: reuse must return the file, not a recomputation
    (tmp_path / "norms.json").write_text(json.dumps(saved))
    said: list[str] = []
    assert analyze(subject, ["norms"], tmp_path, reuse=True, progress=said.append)["norms"]["total"] == -1.0
    assert "resumed" in said[0]
    saved["epoch"] = subject.epoch + 1  # another checkpoint's results are refused, and replaced only when asked
    (tmp_path / "norms.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="norms.json holds norms of run .* at epoch 2 .*--overwrite"):
        analyze(subject, ["norms"], tmp_path, reuse=True, progress=lambda _: None)
    again = analyze(subject, ["norms"], tmp_path, overwrite=True, progress=lambda _: None)
    assert again["norms"]["total"] == pytest.approx(first["norms"]["total"])


def test_other_settings_are_refused_not_overwritten(run, tmp_path: Path) -> None:
    """A piece saved with other settings (hessian.json at n = 64, asked again at n = 32) is kept: refused in one
    line naming the file and the setting, before any piece runs; --reuse loads it, --overwrite replaces it."""
    out, _ = run
    subject = load_subject(out)
    analyze(subject, ["hessian"], tmp_path, sample=64, batch_size=32, progress=lambda _: None)
    before = (tmp_path / "hessian.json").read_text()
    with pytest.raises(ConfigError, match=r"hessian.json holds hessian computed with other settings: sample 64 "
                                          r"\(asked 32\)"):
        analyze(subject, ["norms", "hessian"], tmp_path, sample=32, batch_size=32, progress=lambda _: None)
    assert (tmp_path / "hessian.json").read_text() == before and not (tmp_path / "norms.json").exists()
    reused = analyze(subject, ["hessian"], tmp_path, sample=32, batch_size=32, reuse=True, progress=lambda _: None)
    assert reused["hessian"]["settings"]["n"] == 64
    replaced = analyze(subject, ["hessian"], tmp_path, sample=32, batch_size=32, overwrite=True,
                       progress=lambda _: None)
    assert replaced["hessian"]["settings"]["n"] == 32
    assert json.loads((tmp_path / "hessian.json").read_text())["settings"]["n"] == 32


def test_an_interrupted_analyze_keeps_what_finished_and_resumes(run, tmp_path: Path, monkeypatch) -> None:
    out, _ = run
    subject = load_subject(out)
    calls: list[str] = []
    real = dict(PIECES)

    def counted(name: str, interrupt: bool = False):
        def compute(context):
            calls.append(name)
            if interrupt:
                raise KeyboardInterrupt
            return real[name].compute(context)
        return dataclasses.replace(real[name], compute=compute)

    monkeypatch.setitem(PIECES, "norms", counted("norms"))
    monkeypatch.setitem(PIECES, "sparsity", counted("sparsity", interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        analyze(subject, ["norms", "sparsity"], tmp_path, sample=32, batch_size=32, progress=lambda _: None)
    assert (tmp_path / "norms.json").exists() and (tmp_path / "norms.png").exists()
    assert not list(tmp_path.glob("sparsity*")) and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setitem(PIECES, "sparsity", counted("sparsity"))
    said: list[str] = []
    results = analyze(subject, ["norms", "sparsity"], tmp_path, sample=32, batch_size=32, progress=said.append)
    assert calls == ["norms", "sparsity", "sparsity"]  # norms resumed from its file, not recomputed
    assert "resumed" in said[0] and set(results) == {"norms", "sparsity"}
    saved = json.loads((tmp_path / "sparsity.json").read_text())
    assert saved["seconds"] > 0 and saved["analyze_settings"]["sample"] == 32


def test_first_look_by_default_with_a_bar_per_piece(run, tmp_path: Path, capsys) -> None:
    out, _ = run
    assert main(["analyze", str(out), "--out", str(tmp_path), "--sample", "32", "--landscape-sample", "32",
                 "--landscape-steps", "3"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(f"{p}.json" for p in FIRST_LOOK)
    printed = capsys.readouterr()
    assert "lambda_max" in printed.out and "Hessian trace" in printed.out and "loss trained -> init" in printed.out
    assert printed.err == ""  # no bar where stderr is not a terminal (logs, pipes)
    subject = load_subject(out)
    analyze(subject, ["norms", "landscape_1d"], tmp_path / "bars", sample=32, landscape_sample=32,
            landscape_steps=3, bars=True, progress=lambda _: None)
    bars = capsys.readouterr().err
    assert f"{subject.name}: norms" in bars and f"{subject.name}: landscape_1d" in bars and "5/5" in bars


@pytest.mark.parametrize(("args", "culprit"), [
    (["--what", ""], "--what: no piece named"), (["--what", " , "], "--what: no piece named"),
    (["--what", "hessian,landscap"], "--what: unknown piece(s) landscap"),
    (["--tol", "0"], "--tol 0.0: must be in (0, 1)"), (["--tol", "1.5"], "--tol 1.5: must be in (0, 1)"),
    (["--sample", "5000"], "--sample 5000: the training set"),
    (["--ntk-n", "999", "--what", "ntk"], "--ntk-n 999: the training set")])
def test_bad_input_is_one_line_before_any_work(run, tmp_path: Path, capsys, args: list[str], culprit: str) -> None:
    out, _ = run
    assert main(["analyze", str(out), "--out", str(tmp_path / "a"), *args]) == 2
    err = capsys.readouterr().err
    assert culprit in err and err.count("\n") == 1
    assert not (tmp_path / "a").exists()
