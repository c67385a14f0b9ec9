"""Checkpoint files: verified on read, never executed, refused clearly when truncated or from another model."""

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from helpers import FAST, FMNIST, TINY
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config
from sharpvision.cli import main
from sharpvision.train import RunDirError, train
from sharpvision.train.rundir import RunDir

TWO_STEPS = [*FAST, "train.max_steps_per_epoch=2"]  # 2 steps an epoch: the checkpoint names below count them


def save(folder: Path, step: int, keep: int = 2, **weights: torch.Tensor) -> Path:
    return ckpt.save(folder, step, weights or {"w": torch.arange(6.0).view(2, 3)}, None, {"loop": {"step": step}},
                     {"epoch": 0, "config": {"name": "x"}}, keep)


def test_round_trip_latest_and_keep(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        path = save(tmp_path, step, w=torch.full((2, 2), float(step)))
    got = ckpt.load(tmp_path)
    assert got.path == path == tmp_path / "step_00000003" and (tmp_path / "latest").read_text() == "step_00000003\n"
    assert torch.equal(got.model["w"], torch.full((2, 2), 3.0)) and got.state == {"loop": {"step": 3}}
    assert got.manifest["format"] == ckpt.FORMAT and set(got.manifest["sha256"]) == {"model.safetensors", "state.pt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000002", "step_00000003"]
    assert ckpt.load(tmp_path / "step_00000002" / "state.pt").path == tmp_path / "step_00000002"  # a file inside


def test_channels_last_and_shared_tensors_are_saved_plainly(tmp_path: Path) -> None:
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    tied = {"a": conv.weight, "b": conv.weight, "c": conv.weight[0]}  # one storage, strided views
    save(tmp_path, 1, **tied)
    got = ckpt.load(tmp_path).model
    assert all(torch.equal(got[k], v) for k, v in tied.items())


@pytest.mark.parametrize("cut", ["model.safetensors", "state.pt", "manifest.json"])
def test_a_truncated_file_is_a_clear_error(tmp_path: Path, cut: str) -> None:
    path = save(tmp_path, 1)
    os.truncate(path / cut, (path / cut).stat().st_size // 2)
    with pytest.raises(ckpt.CheckpointError, match=str(path / cut if cut != "manifest.json" else path / cut)):
        ckpt.load(tmp_path)


def test_missing_pieces_are_clear_errors(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    (path / "state.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"state\.pt: missing"):
        ckpt.load(tmp_path)
    (path / "manifest.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="incomplete, manifest.json is missing"):
        ckpt.load(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint here"):
        ckpt.load(tmp_path / "step_00000001" / ".." / "..")
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="notes.pt: not a sharpvision checkpoint"):
        ckpt.load(tmp_path / "notes.pt")


class Payload:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does: call a function on load
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/sharpvision-pwned-marker")


def test_loading_never_executes_code_even_with_a_valid_checksum(tmp_path: Path) -> None:
    """A state.pt replaced by a pickle that runs a shell command, its checksum updated to match: refused, not run."""
    MARKER.unlink(missing_ok=True)
    path = save(tmp_path, 1)
    torch.save({"loop": Payload()}, path / "state.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sha256"]["state.pt"] = ckpt.file_sha256(path / "state.pt")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ckpt.CheckpointError, match=r"step_00000001: cannot be read \(UnpicklingError: Weights only"):
        ckpt.load(tmp_path)
    assert not MARKER.exists(), "the pickle ran"


def test_fit_names_the_file_and_the_mismatches() -> None:
    with pytest.raises(ckpt.CheckpointError, match=r"f\.pt: does not fit the net \(shape \(checkpoint vs model\): "
                                                    r"weight \(3, 4\) vs \(5, 4\), bias \(3,\) vs \(5,\)\)"):
        ckpt.fit(nn.Linear(4, 5), nn.Linear(4, 3).state_dict(), Path("f.pt"), "the net")
    with pytest.raises(ckpt.CheckpointError, match=r"missing: 1\.weight, 1\.bias; unexpected: weight, bias"):
        ckpt.fit(nn.Sequential(nn.ReLU(), nn.Linear(4, 3)), nn.Linear(4, 3).state_dict(), Path("f.pt"), "x")


@pytest.mark.needs_fmnist
def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path, capsys) -> None:
    train(config.load(TINY, [*TWO_STEPS, "schedule.epochs=1"]), tmp_path / "vit", progress=False)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "vit"), "model.name=resnet_micro"]) == 2
    err = capsys.readouterr().err
    # refused before any weights are read: an override may change the data or the runtime, never the model
    assert "override 'model.name=resnet_micro' changes the model" in err and "does not fit model 'resnet_micro'" in err
    assert main(["eval", str(tmp_path / "vit"), "model.kwargs={embed_dim: 48}"]) == 2
    assert "override 'model.kwargs={embed_dim: 48}' changes the model" in capsys.readouterr().err


@pytest.mark.needs_fmnist
def test_resume_refuses_a_corrupt_latest_and_touches_nothing(tmp_path: Path) -> None:
    cfg = config.load(TINY, [*TWO_STEPS, "schedule.epochs=3"])
    train(cfg, tmp_path / "run", stop_after_epoch=2, progress=False)
    bad = tmp_path / "run" / "checkpoints" / "step_00000004" / "model.safetensors"
    with bad.open("r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 8)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(ckpt.CheckpointError, match=f"{bad}: checksum mismatch"):
        train(cfg, tmp_path / "run", resume=True, progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.needs_fmnist
def test_resume_allows_changing_where_data_lives_and_how_the_run_is_observed(tmp_path: Path) -> None:
    cfg = config.load(TINY, [*TWO_STEPS, "schedule.epochs=2"])
    train(cfg, tmp_path / "run", stop_after_epoch=1, progress=False)
    moved = config.load(TINY, [*TWO_STEPS, "schedule.epochs=2", "train.log_every=1", "train.keep_checkpoints=1",
                               f"data.root={FMNIST}"])
    assert train(moved, tmp_path / "run", resume=True, progress=False)["epochs"] == 2
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.is_dir()] == ["step_00000004"]
    with pytest.raises(RunDirError, match=r"schedule\.epochs \(2 -> 3\)"):
        train(config.load(TINY, [*TWO_STEPS, "schedule.epochs=3"]), tmp_path / "run", resume=True, progress=False)


@pytest.mark.needs_fmnist
def test_more_workers_than_saved_warns_that_the_resume_is_not_bit_exact(tmp_path: Path) -> None:
    cfg = config.load(TINY, [*TWO_STEPS, "schedule.epochs=1"])
    train(cfg, tmp_path / "run", progress=False)
    from sharpvision import data as svdata
    from sharpvision.models import from_config as build_model
    from sharpvision.optim import build_optimizer, build_scheduler
    model = build_model(cfg, svdata.build_datasets(cfg.data))
    opt = build_optimizer(model, cfg.optim, 0.0)
    run = RunDir.open(tmp_path / "run", cfg, resume=True, writes=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop_state = run.restore(model, opt, build_scheduler(opt, cfg.schedule, 2), None, rank=1)
    assert loop_state["epoch"] == 1 and "saved by 1 process(es); rank 1 starts fresh" in str(caught[0].message)
