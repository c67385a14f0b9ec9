"""torchrun DDP on CPU (gloo): m-sharpness semantics, equality with one process, resume, errors.

The probe (``tests/ddp_probe.py``, 4 workers) checks the step itself against an independent m-sharpness
computation; the trainer tests launch ``torchrun -m sharpvision train`` with 2 workers, as a user would.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import ddp_probe
import pytest
import torch
from helpers import FAST, ROOT, TINY
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config
from sharpvision.config import ConfigError
from sharpvision.data.loaders import epoch_order, eval_part, worker_order
from sharpvision.train import distributed, train

TWO_EPOCHS = [*FAST, "schedule.epochs=2"]


def torchrun(n: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})


def hand_m_sharpness(m: int) -> torch.Tensor:
    """SAM with one perturbation per group of m examples, written out: the reference for the probe's weights."""
    model, (x, y) = ddp_probe.net(), ddp_probe.data()
    params = list(model.parameters())
    for s in range(ddp_probe.STEPS):
        descent = [torch.zeros_like(p) for p in params]
        for xg, yg in zip(x[s].split(m), y[s].split(m)):
            g = torch.autograd.grad(nn.functional.cross_entropy(model(xg), yg), params)
            norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
            with torch.no_grad():
                for p, gi in zip(params, g):
                    p.add_(0.5 * gi / norm)  # rho = 0.5
            d = torch.autograd.grad(nn.functional.cross_entropy(model(xg), yg), params)
            with torch.no_grad():
                for p, gi, di, acc in zip(params, g, d, descent):
                    p.sub_(0.5 * gi / norm)
                    acc.add_(di / (len(x[s]) // m))
        with torch.no_grad():
            for p, acc in zip(params, descent):
                p.sub_(0.5 * acc)  # SGD, lr = 0.5
    return torch.cat([p.detach().flatten() for p in params])


def first_gradient(lo: int, hi: int) -> torch.Tensor:
    model, (x, y) = ddp_probe.net(), ddp_probe.data()
    g = torch.autograd.grad(nn.functional.cross_entropy(model(x[0, lo:hi]), y[0, lo:hi]), list(model.parameters()))
    return torch.cat([gi.flatten() for gi in g])


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("probe") / "probe.pt"
    done = torchrun(4, str(ROOT / "tests" / "ddp_probe.py"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_ddp_sam_step_is_m_sharpness(probe: dict, m: int) -> None:
    """4 workers x 4 examples: each perturbation uses the gradient of exactly its m examples (kept local, split or
    shared over a subgroup as m asks); the descent is all-reduced, so every worker ends with the same weights, and
    those match the hand computation."""
    result = probe[m]
    assert result["m"] == m
    weights = result["weights"]
    assert all(torch.equal(w, weights[0]) for w in weights), "workers drifted apart"
    torch.testing.assert_close(weights[0], hand_m_sharpness(m), rtol=1e-5, atol=1e-6)
    firsts = [a[0] for a in result["ascents"]]  # each rank's first perturbation of the first step
    for rank, got in enumerate(firsts):
        lo = rank * 4 if m <= 4 else rank * 4 // m * m
        torch.testing.assert_close(got, first_gradient(lo, lo + m), rtol=1e-5, atol=1e-7)
    same = [torch.allclose(firsts[0], f) for f in firsts]
    assert same == ([True] * 4 if m == 16 else [True, True, False, False] if m == 8 else [True, False, False, False])
    assert len(result["ascents"][0]) == ddp_probe.STEPS * max(4 // m, 1)  # two perturbations per step when m = 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["GSAM", "LookSAM"])
def test_ddp_variants_keep_every_worker_on_the_same_weights(probe: dict, variant: str) -> None:
    """GSAM and LookSAM mix the plain gradient g into the all-reduced descent; g is averaged over the workers
    first, or each worker would step its own way."""
    weights = probe[variant]["weights"]
    assert all(torch.equal(w, weights[0]) for w in weights)
    assert not torch.equal(weights[0], probe[4]["weights"][0])  # and the variant did change the steps


def test_worker_orders_partition_each_global_batch_and_resume_mid_epoch() -> None:
    n, batch = 50, 12
    parts = [worker_order(n, batch, seed=3, epoch=1, rank=r, world=3) for r in range(3)]
    full = epoch_order(n, 3, 1)
    for s in range(n // batch):  # global batch s = the workers' s-th local batches, in rank order
        assert torch.equal(torch.cat([p[s * 4:(s + 1) * 4] for p in parts]), full[s * batch:(s + 1) * batch])
    assert torch.equal(worker_order(n, batch, 3, 1, rank=2, world=3, start=2), parts[2][8:])
    assert torch.equal(worker_order(n, batch, 3, 1), full)
    shares = [eval_part(10, r, 3) for r in range(3)]
    assert [i for s in shares for i in s] == list(range(10))


def test_sharpness_plan_refuses_batches_and_m_that_do_not_fit() -> None:
    four = distributed.Dist(rank=0, world=4)
    with pytest.raises(ConfigError, match=r"data\.batch_size: 30 does not split evenly over 4 workers"):
        distributed.perturbation_groups(None, 30, four, lambda: None)
    with pytest.raises(ConfigError, match=r"optim\.m: 3 must divide the per-worker batch 8"):
        distributed.perturbation_groups(3, 32, four, lambda: None)
    with pytest.raises(ConfigError, match=r"optim\.m: 24 must be a multiple of the per-worker batch 8"):
        distributed.perturbation_groups(24, 32, four, lambda: None)
    plan, m = distributed.perturbation_groups(None, 32, four, lambda: None)
    assert (plan.splits, m, plan.share) == (1, 8, None)
    plan, m = distributed.perturbation_groups(2, 32, four, lambda: None)
    assert (plan.splits, m) == (4, 2)
    with pytest.raises(ConfigError, match=r"optim\.m: 5 must divide data\.batch_size=64"):
        config.load(TINY, ["optim.m=5"])


def weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load(run).model


@pytest.mark.slow
@pytest.mark.needs_fmnist
@pytest.mark.parametrize("m, single_m", [(64, None), (None, 32)], ids=["m=global", "m=per-worker"])
def test_torchrun_two_workers_reproduce_one_process(tmp_path: Path, m: int | None, single_m: int | None) -> None:
    """2 workers x 32 = one process with batch 64, when they perturb alike: m = 64 shares the ascent over both
    workers (one perturbation, as one process); m = 32 per worker equals one process splitting its batch in two."""
    # augmentation draws differ per worker by design; one thread each, as torchrun gives its workers; SGD, because
    # Adam divides by sqrt(v) and so turns the all-reduce's rounding on near-zero gradients into lr-sized steps
    common = [*TWO_EPOCHS, "data.augment=none", "train.device=cpu", "train.threads=1", "optim.name=sgd",
              "optim.lr=0.05"]
    ddp = [f"optim.m={m}"] if m else []
    done = torchrun(2, "-m", "sharpvision", "train", str(TINY), "--out", str(tmp_path / "ddp"), "--quiet", *common,
                    *ddp)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # printed once, by rank 0
    assert summary["workers"] == 2 and summary["sam_m"] == (m or 32) and summary["batch_size"] == 64
    single = train(config.load(TINY, [*common, *([f"optim.m={single_m}"] if single_m else [])]), tmp_path / "one",
                   progress=False)
    assert single["sam_m"] == (single_m or 64) and single["workers"] == 1
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert summary["test_loss"] == pytest.approx(single["test_loss"], rel=1e-4)
    assert summary["train_loss"] == pytest.approx(single["train_loss"], rel=1e-4)
    assert summary["steps"] == single["steps"] == 6
    assert not any(p.name.startswith("rank") for p in (tmp_path / "ddp").iterdir())
    epochs = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if "train_loss" in r] == [0, 1], "one log, written by rank 0 only"


@pytest.mark.slow
@pytest.mark.needs_fmnist
def test_torchrun_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    """Both workers SIGKILLed after 4 steps; the resume (mid-epoch checkpoint at step 3) restores each worker's own
    random streams, so augmentation, drop-path and EMA continue as in the uninterrupted 2-worker run."""
    args = ["train", str(TINY), "--quiet", *TWO_EPOCHS, "train.checkpoint_every=3", "train.device=cpu",
            "model.drop_path_rate=0.1", "train.ema_decay=0.9"]
    full = torchrun(2, "-m", "sharpvision", *args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    crashed = torchrun(2, str(ROOT / "tests" / "crash.py"), "step:4", *args, "--out", str(tmp_path / "part"))
    assert crashed.returncode != 0 and ckpt.load(tmp_path / "part").manifest["step"] == 3
    assert ckpt.load(tmp_path / "part").manifest["world_size"] == 2
    resumed = torchrun(2, "-m", "sharpvision", *args, "--out", str(tmp_path / "part"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # torchrun --max-restarts: rank 1 alone SIGKILLed after 4 steps; torchrun restarts both and they resume by
    # themselves (no --resume given) from the step-3 checkpoint. One restart must be enough: the agent's store keeps
    # the failed attempt's keys, and without a store prefix per attempt (distributed._attempt_store) most restarts
    # read a dead peer's address and fail to connect
    elastic = torchrun(2, "--max-restarts=1", str(ROOT / "tests" / "crash.py"), "step:4@1", *args,
                       "train.dist_timeout_s=30", "--out", str(tmp_path / "elastic"), timeout=900)
    assert elastic.returncode == 0, elastic.stderr[-3000:]
    assert "failed (exitcode: -9) local_rank: 1" in elastic.stderr  # the kill happened; the job still finished
    a = json.loads(full.stdout)
    for done in (resumed, elastic):
        b = json.loads(done.stdout[done.stdout.index("{"):])
        for key in ("test_loss", "test_accuracy", "ema_test_accuracy", "train_loss", "train_accuracy", "steps"):
            assert a[key] == b[key], key
    wa = weights(tmp_path / "full")
    for run in ("part", "elastic"):
        wb = weights(tmp_path / run)
        assert all(torch.equal(t, wb[k]) for k, t in wa.items()), run


@pytest.mark.slow
@pytest.mark.needs_fmnist
def test_torchrun_error_stops_the_job_with_the_message(tmp_path: Path) -> None:
    """What a user sees: the one-line error naming the field, a failed job, no traceback, nothing written.

    Which worker torchrun reports as exiting 2 and which it SIGTERMs first is a race in its shutdown (the first
    worker to exit makes the agent stop the others), so only "each failed rank exited 2 or was stopped by torchrun"
    is asserted here; that every worker exits 2 on its own is the next test's, without torchrun.
    """
    done = torchrun(2, "-m", "sharpvision", "train", str(TINY), "--out", str(tmp_path / "r"), "optim.rho=-1",
                    timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "sharpvision train: error:" in line]
    assert errors and all("optim.rho: -1" in line for line in errors), done.stderr[-3000:]
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", done.stderr)
    assert "2" in codes and set(codes) <= {"2", "-15"}, codes  # -15: SIGTERM from torchrun's agent
    assert f'File "{ROOT / "src"}' not in done.stderr  # torchrun prints its own traceback; none from our code
    assert not (tmp_path / "r").exists()


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("rank", [0, 1])
def test_each_worker_rejects_a_bad_recipe_before_joining_the_group(tmp_path: Path, rank: int) -> None:
    """Each worker, started alone with torchrun's environment and no peer, exits 2 with the message: the recipe is
    checked before any process group or barrier exists (joining one would wait for the missing peer until the
    timeout), so under torchrun every worker stops on its own whatever the order."""
    with socket.socket() as s:  # a port with nobody listening: a rendezvous there could never complete
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "RANK": str(rank),
           "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    done = subprocess.run([sys.executable, "-m", "sharpvision", "train", str(TINY), "--out", str(tmp_path / "r"),
                           "optim.rho=-1"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("sharpvision train: error: recipe")
    assert "optim.rho: -1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
