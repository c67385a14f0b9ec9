"""Nothing lost: runs really SIGKILLed (at chosen points and at a random moment) resume to the uninterrupted result.

Each attempt is a subprocess; ``tests/crash.py`` kills it from inside at a named point (mid-epoch, half-way through
writing a checkpoint, between the folder rename and the ``latest`` update, before pruning). The resumed run must
end with exactly the metrics and weights of a run that was never interrupted: dropout, drop-path, augmentation,
EMA, SAM and the schedule all continue where the checkpoint left them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY

from sharpvision import checkpoint as ckpt

# 4 steps per epoch, 3 epochs; checkpoints at steps 3 (mid-epoch), 4, 6, 8, 9, 12
ARGS = ["--quiet", "data.subset_train=256", "data.subset_test=128", "train.log_every=2", "train.checkpoint_every=3",
        "train.ema_decay=0.9", "model.drop_path_rate=0.1", "train.threads=1"]
TIMING = ("images_per_s", "train_time_s", "tflops_per_s", "wall_time_s", "mfu")

pytestmark = [pytest.mark.needs_fmnist, pytest.mark.slow]


def sharpvision(out: Path, *extra: str, crash: str | None = None, resume: bool = False) -> subprocess.Popen:
    prefix = [sys.executable, str(ROOT / "tests" / "crash.py"), crash] if crash else [sys.executable, "-m",
                                                                                     "sharpvision"]
    cmd = [*prefix, "train", str(TINY), "--out", str(out), *ARGS, *extra, *(["--resume"] if resume else [])]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def latest_step(run: Path) -> int | None:
    return ckpt.load(run).manifest["step"] if ckpt.exists(run / "checkpoints") else None


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the timing fields, which differ between any two runs."""
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert finish(sharpvision(run)) == 0
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    summary, ref = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    assert {k: v for k, v in summary.items() if k not in TIMING} == {k: v for k, v in ref.items() if k not in TIMING}
    assert metrics(run) == metrics(reference)
    a, b = ckpt.load(run), ckpt.load(reference)
    assert a.manifest["step"] == 12 and all(torch.equal(t, b.model[k]) for k, t in a.model.items())
    assert all(torch.equal(t, b.ema[k]) for k, t in a.ema.items())


def test_killed_at_every_kind_of_point_resumes_to_the_uninterrupted_run(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "run"
    chain = [  # (where this attempt is killed, the checkpoint it leaves as latest)
        ("step:2", None),  # before the first checkpoint: the resume starts over
        ("write:2", 3),  # model.safetensors of step 4 half written: step 3 (mid-epoch) stays latest
        ("rename:1", 3),  # step 4's folder is in place but latest still names step 3
        ("state:2", 4),  # step 6's state.pt written, no manifest yet
        ("latest:2", 8),  # latest names step 8, the old checkpoints are not pruned yet
        ("step:3", 9),  # steps 9 (checkpointed), 10 and 11 done, then killed mid-epoch
    ]
    for i, (point, expected) in enumerate(chain):
        assert finish(sharpvision(run, crash=point, resume=i > 0)) == -signal.SIGKILL, point
        assert latest_step(run) == expected, point
    assert finish(sharpvision(run, resume=True)) == 0
    assert_same_run(run, reference)
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert left == ["latest", "step_00000009", "step_00000012"], left  # train.keep_checkpoints=2, no temp folders


def test_killed_from_outside_at_a_random_moment_resumes_to_the_uninterrupted_run(tmp_path: Path,
                                                                                  reference: Path) -> None:
    run = tmp_path / "run"
    proc = sharpvision(run)
    while not ckpt.exists(run / "checkpoints") and proc.poll() is None:  # after the first checkpoint
        time.sleep(0.005)
    time.sleep(torch.rand(()).item() * 0.2)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL, "the run ended before the kill: make it longer"
    killed_at = latest_step(run)
    assert finish(sharpvision(run, resume=True)) == 0
    assert_same_run(run, reference)
    assert killed_at is not None and killed_at < 12


def test_killed_while_writing_the_first_checkpoint_resumes_to_the_uninterrupted_run(tmp_path: Path,
                                                                                     reference: Path) -> None:
    """No ``latest`` yet: a half-written first checkpoint is a temp folder (start over), a renamed one without
    ``latest`` is found as the newest complete folder."""
    run = tmp_path / "run"
    assert finish(sharpvision(run, crash="write:1")) == -signal.SIGKILL
    assert latest_step(run) is None and not (run / "checkpoints" / "latest").exists()
    assert finish(sharpvision(run, crash="rename:1", resume=True)) == -signal.SIGKILL
    assert latest_step(run) == 3 and not (run / "checkpoints" / "latest").exists()
    assert finish(sharpvision(run, resume=True)) == 0
    assert_same_run(run, reference)
