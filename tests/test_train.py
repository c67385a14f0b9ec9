"""End to end on real Fashion-MNIST: run directory, exact resume, refusals, divergence, CLI."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import FAST, TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sharpvision import checkpoint as ckpt
from sharpvision import config
from sharpvision.cli import main
from sharpvision.config import ConfigError
from sharpvision.models import from_config as build_model
from sharpvision.train import RunDirError, TrainingDiverged, session, train

pytestmark = pytest.mark.needs_fmnist


def tiny(*overrides: str) -> config.Config:
    return config.load(TINY, [*FAST, *overrides])


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory, by relative path: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def epoch_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if "train_loss" in json.loads(x)]


def test_tiny_recipe_writes_the_run_directory(tmp_path: Path) -> None:
    summary = train(tiny(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for key in ("test_accuracy", "test_loss", "train_loss", "images_per_s", "wall_time_s", "params", "model",
                "optimizer"):
        assert key in summary, key
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["optimizer"] == "SAM(AdamW, rho=0.05)" and summary["model"] == "vit_micro"
    assert summary["steps"] == 3 * 3 and summary["epochs"] == 3
    assert [r["epoch"] for r in epoch_records(run)] == [0, 1, 2]
    assert config.load(run / "config.yaml") == tiny()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    saved = ckpt.load(run)
    assert saved.path == run / "checkpoints" / "step_00000009" and saved.manifest["epoch"] == 3
    assert saved.state["loop"]["epoch"] == 3 and set(saved.state["rng"][0]) >= {"torch", "numpy", "python"}
    assert saved.config == tiny().to_dict() and saved.manifest["versions"]["torch"] == torch.__version__
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000006", "step_00000009"]
    assert sorted(p.name for p in saved.path.iterdir()) == ["manifest.json", "model.safetensors", "state.pt"]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    cfg = tiny("train.ema_decay=0.9", "model.drop_path_rate=0.1")
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", stop_after_epoch=1, progress=False)
    assert part == {"stopped_at_epoch": 1, "run_dir": str(tmp_path / "part")}
    assert not (tmp_path / "part" / "summary.json").exists()
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "ema_test_accuracy", "steps"):
        assert resumed[key] == full[key], key
    a, b = ckpt.load(tmp_path / "full"), ckpt.load(tmp_path / "part")
    for name, tensor in a.model.items():
        assert torch.equal(tensor, b.model[name]), name
    assert a.ema is not None and all(torch.equal(t, b.ema[k]) for k, t in a.ema.items())
    steps = [[e.step for e in EventAccumulator(str(d / "tensorboard")).Reload().Scalars("epoch/test_accuracy")]
             for d in (tmp_path / "full", tmp_path / "part")]
    assert steps[0] == steps[1] == [3, 6, 9], steps  # the epoch logged before the stop survives the resume
    drop = ("images_per_s", "train_time_s", "tflops_per_s", "wall_time_s")
    strip = [[{k: v for k, v in r.items() if k not in drop} for r in epoch_records(d)]
             for d in (tmp_path / "full", tmp_path / "part")]
    assert strip[0] == strip[1]
    walls = [r["wall_time_s"] for r in epoch_records(tmp_path / "part")]  # cumulative, carried over the resume
    assert all(a < b for a, b in zip(walls, walls[1:])) and walls[-1] == resumed["wall_time_s"]


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    train(tiny("schedule.epochs=1"), tmp_path / "run", progress=False)
    before = snapshot(tmp_path / "run")
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        train(tiny("schedule.epochs=1"), tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match=r"optim\.rho \(0\.05 -> 0\.2\)"):
        train(tiny("schedule.epochs=1", "optim.rho=0.2"), tmp_path / "run", resume=True, progress=False)
    assert snapshot(tmp_path / "run") == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    real = session.make_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(x, y):
            loss, logits = step(x, y)
            calls["n"] += 1
            return (loss * float("nan") if calls["n"] > 4 else loss), logits  # NaN from epoch 2 on
        return wrapped

    monkeypatch.setattr(session, "make_step", poisoned)
    with pytest.raises(TrainingDiverged, match="became nan at epoch 2"):
        train(tiny(), tmp_path / "run", progress=False)
    assert ckpt.load(tmp_path / "run").manifest["epoch"] == 1
    assert not (tmp_path / "run" / "summary.json").exists()


def test_cli_train_eval_and_errors(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(TINY), "--out", str(run), "--quiet", *FAST, "schedule.epochs=1"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == summary["test_accuracy"] and result["n"] == 128

    assert main(["train", str(TINY), "--out", str(tmp_path / "x"), "optim.rhoo=1"]) == 2
    assert "optim.rhoo: unknown field (did you mean optim.rho?)" in capsys.readouterr().err
    assert main(["train", str(TINY), "--out", str(tmp_path / "y"), "model.name=vit_s61"]) == 2
    assert "vit_s61" in capsys.readouterr().err
    assert main(["train", str(TINY), "--out", str(tmp_path / "z"), "data.root=/nonexistent"]) == 2
    assert "/nonexistent" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", str(TINY), "--out", str(tmp_path / "c"), "train.device=cuda"]) == 2
        assert "train.device: 'cuda' asked for" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["eval", str(run), "--ema"]) == 2
    assert "no EMA weights" in capsys.readouterr().err


def test_cli_models_lists_the_paper_names(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_s16", "mixer_b16", "resnet152x2", "convnext_t", "vit_micro"):
        assert f"\n{name} " in "\n" + out


def test_module_entry_point_exits_nonzero_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "sharpvision", "train", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "malformed YAML" in proc.stderr and str(bad) in proc.stderr


def test_strong_augmentation_validation_split_and_label_noise_run_through_the_loop(tmp_path: Path) -> None:
    cfg = tiny("schedule.epochs=1", "data.augment=strong", "data.val_fraction=0.1", "data.label_noise=0.2",
               "train.label_smoothing=0.1", "optim.name=sgd", "optim.lr=0.05", "model.name=resnet_micro")
    summary = train(cfg, tmp_path / "run", progress=False)
    assert {"val_accuracy", "val_loss", "test_accuracy"} <= set(summary)
    assert 0.0 <= summary["train_accuracy"] <= 1.0  # accuracy against hard labels, even with mixed targets
    assert summary["optimizer"] == "SAM(SGD, rho=0.05)"


def test_eval_accepts_a_checkpoint_folder(tmp_path: Path, capsys) -> None:
    train(tiny("schedule.epochs=1"), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "checkpoints" / "step_00000003"), "data.subset_test=64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 64 and result["epoch"] == 1  # the override reached the data, the file its state


def test_a_failed_start_does_not_lock_the_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model: 'vit_micro' rejects its arguments .*foo"):
        train(tiny("model.kwargs={foo: 1}"), tmp_path / "run", progress=False)
    summary = train(tiny("schedule.epochs=1"), tmp_path / "run", progress=False)  # same dir, fixed recipe
    assert summary["epochs"] == 1


def test_model_arguments_are_checked_and_drop_rates_passed_only_when_set() -> None:
    data = SimpleNamespace(num_classes=10, img_size=32, in_chans=1)
    with pytest.raises(ConfigError, match="model.kwargs: drop_rate must not be set here"):
        build_model(tiny("model.kwargs={drop_rate: 0.1}"), data)
    assert build_model(tiny("model.name=dla34", "model.drop_path_rate=0.0"), data)  # timm model without drop path
    with pytest.raises(ConfigError, match="dla34"):
        build_model(tiny("model.name=dla34", "model.drop_path_rate=0.1"), data)
    model = build_model(tiny("model.drop_path_rate=0.2"), data)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)


def test_diverged_weights_are_never_checkpointed(tmp_path: Path, monkeypatch) -> None:
    """The last step of epoch 1 reports a finite loss but leaves NaN weights; no evaluation that epoch."""
    real = session.make_step

    def poisoned(model, *args, **kwargs):
        step, calls = real(model, *args, **kwargs), []

        def wrapped(x, y):
            out = step(x, y)
            calls.append(1)
            if len(calls) == 3:
                next(model.parameters()).data.fill_(float("nan"))
            return out
        return wrapped

    monkeypatch.setattr(session, "make_step", poisoned)
    with pytest.raises(TrainingDiverged, match="after epoch 1 the weights hold NaN or inf"):
        train(tiny("train.eval_every=2"), tmp_path / "run", progress=False)
    assert not ckpt.exists(tmp_path / "run" / "checkpoints")


def test_demo_fresh_deletes_only_its_own_runs_and_refuses_stale_reuse(tmp_path: Path, capsys) -> None:
    small = ["--quiet", "data.fraction=0.02", "schedule.epochs=1", "train.max_steps_per_epoch=2",
             "data.subset_test=200", "train.lambda_max_sample=64", "schedule.warmup_epochs=0"]
    (tmp_path / "my_notes.txt").write_text("precious")
    assert main(["demo", "--out", str(tmp_path), *small]) == 0
    assert main(["demo", "--out", str(tmp_path), "--fresh", *small]) == 0
    assert (tmp_path / "my_notes.txt").read_text() == "precious"
    record = json.loads((tmp_path / "demo.json").read_text())
    assert set(record["runs"]) == {"AdamW", "SAM(AdamW)"} and "test accuracy" in record["table"]
    for label, folder in (("AdamW", "vit_base"), ("SAM(AdamW)", "vit_sam")):  # the curve is the run's last test
        assert record["test_curves"][label][-1] == [1, record["runs"][label]["test_accuracy"]], folder
    out = capsys.readouterr().out
    assert ["epoch", "AdamW", "SAM(AdamW)"] in [line.split() for line in out.splitlines()]
    assert "AdamW: best test accuracy" in out
    for label in ("AdamW", "SAM(AdamW)"):  # the demo recipe measures lambda_max; with one epoch, once at the end
        (point,) = record["lambda_max"][label]
        assert point[0] == 1 and point[1] == record["runs"][label]["lambda_max"] > 0
    assert record["what_it_shows"] in out and "One seed and one regime" in record["what_it_shows"]
    assert main(["demo", "--out", str(tmp_path), *small, "optim.rho=0.5"]) == 2  # not the table of rho 0.05
    err = capsys.readouterr().err
    assert "optim.rho (0.05 -> 0.5)" in err and "pass --fresh" in err


def test_curve_table_shows_each_runs_peak_and_last_epoch() -> None:
    from sharpvision.demo import curve_table
    text = curve_table({"A": [(2, 0.7), (4, 0.8), (6, 0.6)], "B": [(2, 0.65), (4, 0.75), (6, 0.77)]})
    lines = text.splitlines()
    assert lines[1].split() == ["2", "0.7000", "0.6500"] and lines[3].split() == ["6", "0.6000", "0.7700"]
    assert lines[4] == "A: best test accuracy 0.8000 at epoch 4, last 0.6000 (epoch 6)"
    assert lines[5] == "B: best test accuracy 0.7700 at epoch 6, last 0.7700 (epoch 6)"


def test_stop_after_epoch_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", str(TINY), "--out", str(tmp_path / "r"), "--stop-after-epoch", "0"])


def test_sharpness_logging_records_lambda_max_and_leaves_training_unchanged(tmp_path: Path) -> None:
    plain = train(tiny("schedule.epochs=2"), tmp_path / "plain", progress=False)
    logged = train(tiny("schedule.epochs=2", "train.lambda_max_every=1", "train.lambda_max_sample=64"),
                   tmp_path / "logged", progress=False)
    values = [r["lambda_max"] for r in epoch_records(tmp_path / "logged")]
    assert len(values) == 2 and all(v > 0 for v in values)
    assert logged["test_accuracy"] == plain["test_accuracy"] and logged["train_loss"] == plain["train_loss"]
    a, b = ckpt.load(tmp_path / "plain").model, ckpt.load(tmp_path / "logged").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sam_every_k_is_wired_and_resumes_exactly(tmp_path: Path) -> None:
    """3 steps per epoch with k=2: SAM steps fall at 0, 2, 4, ... across epoch boundaries, and a resume keeps them."""
    cfg = tiny("optim.sam=true", "optim.sam_every=2")
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", stop_after_epoch=1, progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed["train_loss"] == full["train_loss"] and "every 2 steps" in full["optimizer"]
    every_step = train(tiny("optim.sam=true"), tmp_path / "sam", progress=False)
    assert full["train_loss"] != every_step["train_loss"]  # the skipped steps really skip the ascent
    a, b = (ckpt.load(tmp_path / d).model for d in ("full", "part"))
    assert all(torch.equal(t, b[k]) for k, t in a.items())


@pytest.mark.parametrize("variant", [["optim.variant=looksam", "optim.sam_every=2"],
                                     ["optim.variant=gsam", "optim.rho_min=0.01"]])
def test_sam_variants_are_wired_and_resume_exactly(tmp_path: Path, variant: list[str]) -> None:
    """LookSAM's stored direction and GSAM's lr-following rho survive a resume; both differ from plain SAM."""
    cfg = tiny("optim.sam=true", *variant)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", stop_after_epoch=1, progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed["train_loss"] == full["train_loss"]
    assert full["optimizer"].startswith(("LookSAM(", "GSAM("))
    assert full["train_loss"] != train(tiny("optim.sam=true"), tmp_path / "sam", progress=False)["train_loss"]
