"""``sharpvision eval RUN --attack ...`` end to end on a tiny trained run: the files, and numbers that must hold."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import ONE_EPOCH, TINY

from sharpvision import config
from sharpvision.cli import main
from sharpvision.evaluate import run as evaluation
from sharpvision.evaluate.accuracy import evaluate
from sharpvision.train import train

pytestmark = pytest.mark.needs_fmnist


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("robust") / "run"
    train(config.load(TINY, [*ONE_EPOCH, "train.max_steps_per_epoch=6"]), run, progress=False)
    return run


def test_pgd_from_the_cli_writes_json_and_figure_with_clean_accuracy_at_eps_zero(trained: Path, capsys,
                                                                                 one_thread) -> None:
    assert main(["eval", str(trained), "--attack", "pgd", "--eps", "0.02,1.0", "--steps", "3",
                 "--subset", "48"]) == 0
    out = capsys.readouterr().out
    assert "pgd linf, n=48" in out and "eps 1 " in out
    result = json.loads((trained / "eval" / "attack_pgd_linf.json").read_text())
    assert (trained / "eval" / "attack_pgd_linf.png").stat().st_size > 5000
    assert result["n"] == 48 and result["steps"] == 3 and result["alpha"] == "2.5*eps/steps" and result["seconds"] > 0
    assert set(result["accuracy"]) == {"0.0", "0.02", "1.0"}
    run = evaluation.load(trained)
    clean = evaluate(run.model, run.test_batches(48))["accuracy"]
    assert result["accuracy"]["0.0"] == clean  # eps 0 is the clean accuracy on the same images
    assert result["accuracy"]["1.0"] == 0.0  # an L-inf ball of radius 1 holds every image: nothing survives
    assert result["accuracy"]["0.02"] <= clean
    assert result["command"].startswith("sharpvision") and result["epoch"] == 1  # sys.argv: pytest's here


def test_fgsm_and_pgd_agree_with_the_library_on_the_run(trained: Path, tmp_path: Path, one_thread) -> None:
    """The task adds loading and files, not numbers: the CLI's result is the library's on the same batches."""
    from sharpvision.evaluate.adversarial import robust_accuracy
    run = evaluation.load(trained)
    result = evaluation.attack_run(run, "fgsm", [0.05], out=tmp_path, subset=32)
    direct = robust_accuracy(run.model, run.test_batches(32), [0.0, 0.05], attack="fgsm", mean=run.bundle.mean,
                             std=run.bundle.std)
    assert result["accuracy"] == {str(k): v for k, v in direct["accuracy"].items()}
    assert torch.tensor(run.bundle.mean).numel() == 1  # Fashion-MNIST: grey, one channel of statistics


def test_corruptions_from_the_cli_with_a_baseline_and_a_written_copy(trained: Path, tmp_path: Path, capsys,
                                                                     one_thread) -> None:
    """Against itself as the baseline, mCE is exactly 100 (relative mCE too, where this barely trained run's
    corrupted error exceeds its clean error, else it is undefined and said so); the written copy holds every
    corruption x severity asked for, and its accuracy is the run's (the same images, the same seeds)."""
    import numpy as np
    written = tmp_path / "fmnist-c"
    assert main(["eval", str(trained), "--corruptions", "noise,pixelate", "--severities", "1,5", "--subset", "40",
                 "--baseline", str(trained), "--write", str(written), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "4 corruptions, 28px table, n=40" in out and "mCE 100.0, relative mCE " in out
    result = json.loads((tmp_path / "eval" / "corruptions.json").read_text())
    assert list(result["accuracy"]) == ["gaussian_noise", "shot_noise", "impulse_noise", "pixelate"]
    assert all(list(per) == ["1", "5"] for per in result["accuracy"].values())
    assert result["baseline"]["mce"] == pytest.approx(100.0) and result["n"] == 40
    relative = result["baseline"]["relative_mce"]
    assert relative == pytest.approx(100.0) if relative is not None else "does not exceed" in out
    assert (tmp_path / "eval" / "corruptions.png").stat().st_size > 5000
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["corruptions"] == list(result["accuracy"]) and manifest["severities"] == [1, 5]
    images, labels = np.load(written / "gaussian_noise.npy"), np.load(written / "labels.npy")
    assert images.shape == (80, 28, 28, 1) and images.dtype == np.uint8 and labels.shape == (80,)
    run = evaluation.load(trained)
    x = (torch.from_numpy(images[40:]).permute(0, 3, 1, 2).float() / 255 - run.bundle.mean[0]) / run.bundle.std[0]
    with torch.no_grad():
        correct = (run.model(x).argmax(1) == torch.from_numpy(labels[40:])).float().mean().item()
    assert correct == pytest.approx(result["accuracy"]["gaussian_noise"]["5"], abs=1 / 40)  # uint8 rounding


@pytest.mark.parametrize("argv,culprit", [
    (["--corruptions", "fog,blurr"], "blurr"),
    (["--corruptions", "--severities", "0,6"], "severit"),
    (["--severities", "1"], "--severities needs --corruptions"),
    (["--baseline", "somewhere"], "--baseline needs --corruptions"),
    (["--corruptions", "--severities", "2.5"], "'2.5'"),
    (["--attack", "pgd", "--eps", "1.5"], "eps 1.5"),
    # a mistake in a later stage is found before the first stage writes its files
    (["--corruptions", "fog", "--attack", "pgd", "--eps", "-0.1"], "eps must be >= 0"),
    (["--corruptions", "fog", "--mnist-c", "snow"], "'snow'"),
    (["--mnist-c", "rotate", "--attack", "pgd", "--eps", "-0.1"], "eps must be >= 0"),
    (["--corruptions", "fog", "--baseline", "somewhere"], "somewhere"),
])
def test_bad_corruption_requests_name_the_culprit_and_write_nothing(trained: Path, tmp_path: Path, capsys,
                                                                    argv: list[str], culprit: str) -> None:
    assert main(["eval", str(trained), *argv, "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "error: " in err[0] and culprit in err[0]
    assert not (tmp_path / "eval").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_stages_show_progress_on_a_terminal_only(trained: Path, tmp_path: Path, capsys, monkeypatch,
                                                      one_thread) -> None:
    """Corruptions, MNIST-C and attacks run for minutes on a whole test set: each shows a bar on a terminal, and
    nothing on a pipe or in a log."""
    argv = ["eval", str(trained), "--corruptions", "contrast", "--severities", "1", "--mnist-c", "rotate",
            "--attack", "fgsm", "--eps", "0.1", "--subset", "16", "--out", str(tmp_path / "eval")]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # not a terminal: quiet
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv) == 0
    shown = terminal.getvalue()
    for bar in ("corruptions:   0%", "MNIST-C:   0%", "fgsm linf:   0%"):  # short runs skip the redraws between
        assert bar in shown, shown
