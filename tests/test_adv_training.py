"""Adversarial training (the recipe's ``adv`` section): its fields, the step it builds, and runs that resume exactly.

The step tests spy on every input the model sees, so they check what trains on what: the training passes see one
batch crafted inside the eps-ball, every pass of a SAM step the same one, and the attack's passes leave BatchNorm's
running statistics alone.
"""

from __future__ import annotations

import copy
import json
import shutil
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from helpers import FAST, TINY, sam_variants
from torch import nn

from sharpvision import checkpoint as ckpt
from sharpvision import config
from sharpvision.config import AdvConfig, ConfigError
from sharpvision.evaluate.adversarial import to_pixels
from sharpvision.optim import SAM
from sharpvision.train import RunDirError, pgd_adversary, train
from sharpvision.train.step import PerturbationGroups, make_step

MEAN, STD = (0.5,), (0.25,)
EPS = 0.1
PGD = AdvConfig(method="pgd", eps=EPS, steps=3)


@pytest.mark.parametrize(("override", "message"), [
    ("adv.eps=-0.01", "adv.eps: -0.01 is out of range, expected a value in [0.0, inf]"),
    ("adv.steps=0", "adv.steps: 0 is out of range, expected a value in [1, inf]"),
    ("adv.alpha=0", "adv.alpha: 0.0 is out of range, expected a value in (0.0, inf]"),
    ("adv.method=trades", "adv.method: 'trades' is not one of 'none', 'pgd'"),
    ("adv.method=fgsm", "adv.method: 'fgsm' is not one of 'none', 'pgd'"),
    ("adv.norm=l1", "adv.norm: 'l1' is not one of 'linf', 'l2'"),
    ("adv.epsilon=0.1", "adv.epsilon: unknown field (did you mean adv.eps?)"),
])
def test_bad_adv_fields_are_refused_in_one_line_naming_them(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides({}, [override]))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_adv_refuses_mixup_batches_and_takes_strong_augmentation_without_them() -> None:
    strong = ["data.augment=strong", "adv.method=pgd"]
    for mixer in ("data.mixup=0.8", "data.cutmix=1.0"):
        with pytest.raises(ConfigError, match=r"^adv.method: 'pgd' cannot train on Mixup/CutMix batches"):
            config.from_dict(config.apply_overrides({}, [*strong, mixer, "data.cutmix=0" if "mixup" in mixer
                                                         else "data.mixup=0"]))
    assert config.from_dict(config.apply_overrides({}, [*strong, "data.mixup=0"])).adv.method == "pgd"
    assert config.from_dict(config.apply_overrides({}, ["data.augment=strong"])).adv.method == "none"


def test_defaults_train_on_clean_batches_and_an_old_recipe_without_adv_equals_todays() -> None:
    default = config.Config()
    assert default.adv == AdvConfig() and default.adv.method == "none"
    old = default.to_dict()
    del old["adv"], old["optim"]["rho"]  # as a release before these fields existed wrote it
    assert config.with_defaults(old) == default.to_dict()
    assert config.diff(config.with_defaults({**old, "optim": {"rho": 0.2}}), default.to_dict()) == [
        "optim.rho (0.2 -> 0.05)"]


class Spied(nn.Module):
    """A conv-BN net that records every input it sees, and whether it was in train mode then."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 8 * 8, 3))
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.detach().clone()))
        return self.net(x)

    def trained_on(self) -> list[torch.Tensor]:
        return [x for training, x in self.seen if training]


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels, normalised inputs, labels), fixed."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(8, 1, 8, 8, generator=g)
    return pixels, (pixels - MEAN[0]) / STD[0], torch.randint(0, 3, (8,), generator=g)


def spied_step(optimizer: type | partial, **kwargs) -> tuple[Spied, Spied, torch.Tensor]:
    """One adversarial step on a fresh net; returns (the net, its copy from before the step, the step's loss)."""
    torch.manual_seed(0)
    model = Spied()
    before = copy.deepcopy(model)
    opt = (optimizer(model.parameters(), torch.optim.SGD, lr=0.1) if optimizer is not torch.optim.SGD
           else optimizer(model.parameters(), lr=0.1))
    step = make_step(model, opt, nn.CrossEntropyLoss(), None, nullcontext,
                     adversary=pgd_adversary(model, PGD, MEAN, STD, nullcontext), **kwargs)
    _, x, y = batch()
    loss, _ = step(x, y)
    return model, before, loss


def test_the_step_trains_on_a_batch_crafted_in_the_eps_ball_and_bn_sees_only_that_pass() -> None:
    model, before, loss = spied_step(torch.optim.SGD)
    pixels, x, y = batch()
    (trained,) = model.trained_on()  # one training pass, on one batch
    attack_passes = [s for training, s in model.seen if not training]
    assert len(attack_passes) >= PGD.steps and model.training  # the attack ran in eval mode, train mode restored
    delta = to_pixels(trained, MEAN, STD) - pixels
    assert 0.9 * EPS < delta.abs().max() <= EPS + 1e-6  # perturbed, inside the L-inf ball
    before.eval()
    with torch.no_grad():  # the attack raised the loss at the weights it attacked (eval mode, as it ran)
        clean, attacked = (nn.functional.cross_entropy(before(t), y) for t in (x, trained))
        assert attacked > clean + 0.05
        before.train()
        before(trained)  # BN's running statistics after one train-mode pass on the attacked batch
    bn, ref = model.net[1], before.net[1]
    assert int(bn.num_batches_tracked) == 1
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert loss.isfinite()


@pytest.mark.parametrize("variant", sam_variants(adaptive=(False,)))
def test_both_sam_passes_train_on_the_same_attacked_batch(variant: partial[SAM]) -> None:
    model, _, _ = spied_step(partial(variant, rho=0.05))
    ascent, descent = model.trained_on()
    _, x, _ = batch()
    assert torch.equal(ascent, descent) and not torch.allclose(ascent, x, atol=1e-3)
    assert int(model.net[1].num_batches_tracked) == 1  # BN from SAM's first pass only, none from the attack


def test_an_adversarial_sam_step_moves_the_weights_elsewhere_than_plain_sam() -> None:
    adversarial, _, _ = spied_step(partial(SAM, rho=0.05))
    torch.manual_seed(0)
    plain = Spied()
    _, x, y = batch()
    make_step(plain, SAM(plain.parameters(), torch.optim.SGD, rho=0.05, lr=0.1), nn.CrossEntropyLoss(), None,
              nullcontext)(x, y)
    assert all(torch.equal(t, x) for t in plain.trained_on())
    for layer in (0, 4):  # the conv and the linear weights (the conv bias has no gradient through BN)
        assert not torch.allclose(adversarial.net[layer].weight, plain.net[layer].weight), layer


def test_m_sharpness_groups_split_the_one_attacked_batch() -> None:
    model, _, _ = spied_step(partial(SAM, rho=0.05), groups=PerturbationGroups(splits=2))
    a1, d1, a2, d2 = model.trained_on()
    assert torch.equal(a1, d1) and torch.equal(a2, d2) and len(a1) == len(a2) == 4
    crafted = [s for training, s in model.seen if not training][0]  # the attack saw the whole batch at once
    assert len(crafted) == 8


def test_random_starts_come_from_the_global_torch_rng() -> None:
    torch.manual_seed(0)
    model = Spied()
    _, x, y = batch()
    attack = pgd_adversary(model, PGD, MEAN, STD, nullcontext)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(attack(x, y))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    no_start = pgd_adversary(model, AdvConfig(method="pgd", eps=EPS, steps=3, random_start=False), MEAN, STD,
                             nullcontext)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    fixed = no_start(x, y)
    assert torch.equal(torch.get_rng_state(), state)  # eval mode: no dropout draws, no start: no randomness used
    torch.manual_seed(2)
    assert torch.equal(fixed, no_start(x, y))


SMALL = [*FAST, "data.batch_size=32", "schedule.epochs=2"]  # 3 steps an epoch
ADV = ["adv.method=pgd", "adv.eps=0.1", "adv.steps=1"]  # one step from a random start: the draw a resume must keep


def tiny(*overrides: str) -> config.Config:
    return config.load(TINY, [*SMALL, *overrides])


@pytest.mark.needs_fmnist
def test_sam_with_pgd_at_resumes_exactly_from_an_epoch_end_and_from_inside_an_epoch(tmp_path: Path) -> None:
    """A resume from step 3 (what --stop-after-epoch 1 leaves) and from step 5 (a mid-epoch checkpoint) ends where
    the uninterrupted run does: the random starts after either come from the restored RNG."""
    cfg = tiny(*ADV, "train.checkpoint_every=2", "train.keep_checkpoints=4")  # checkpoints at steps 2, 3, 5, 6
    full = train(cfg, tmp_path / "full", progress=False)
    assert full["adversarial"] == "PGD-1 linf eps=0.1 alpha=2.5*eps/steps" and full["optimizer"].startswith("SAM(")
    for stop in (3, 5):
        run = tmp_path / f"from_{stop}"
        shutil.copytree(tmp_path / "full", run)
        for later in (p for p in (run / "checkpoints").glob("step_*") if int(p.name[5:]) > stop):
            shutil.rmtree(later)
        (run / "checkpoints" / ckpt.LATEST).unlink()  # then the newest folder left is the one resumed
        resumed = train(cfg, run, resume=True, progress=False)
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "steps"):
            assert resumed[key] == full[key], (stop, key)
        a, b = (ckpt.load(d).model for d in (tmp_path / "full", run))
        assert all(torch.equal(t, b[k]) for k, t in a.items()), stop


@pytest.mark.needs_fmnist
def test_a_run_saved_before_the_adv_section_existed_resumes(tmp_path: Path) -> None:
    cfg = tiny()
    train(cfg, tmp_path / "run", stop_after_epoch=1, progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    del saved["adv"]  # as a release before adversarial training wrote it, here and in the checkpoint's manifest
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    for manifest in (tmp_path / "run" / "checkpoints").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        del data["config"]["adv"]
        manifest.write_text(json.dumps(data, indent=2) + "\n")
    with pytest.raises(RunDirError, match=r"adv\.method \('none' -> 'pgd'\)"):
        train(tiny("adv.method=pgd"), tmp_path / "run", resume=True, progress=False)
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["epochs"] == 2
