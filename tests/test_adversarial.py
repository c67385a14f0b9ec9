"""FGSM / PGD / robust accuracy (sharpvision.evaluate.adversarial): hand-computed steps, the eps-ball, restarts, the
gradient-masking checks, and a cross-check against torchattacks 3.5.1 (a dev-only dependency) on the same model and
inputs. The model is a small BN + dropout MLP trained in about a second on 1 x 8 x 8 synthetic images (10 noisy
class prototypes, 8-bit pixels), normalised like the repo's loaders; it reaches ~100% clean accuracy, so the
attacks have something to break.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from sharpvision.errors import SharpvisionError
from sharpvision.evaluate import evaluate
from sharpvision.evaluate.adversarial import (
    AttackError,
    autoattack_accuracy,
    fgsm,
    masking_checks,
    normalize,
    pgd,
    robust_accuracy,
    to_pixels,
)

MEAN, STD = (0.45,), (0.3,)


def _torchattacks():
    """The peer library, or a skip here and a failure under CI (make setup installs it: Makefile)."""
    try:
        import torchattacks
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must cross-check against torchattacks: {e}")
        pytest.skip(f"torchattacks is not installed ({e}); make setup installs it")
    return torchattacks


N_TEST = 1024  # a power of two: torchattacks' mean loss is then our summed loss scaled exactly, bit for bit


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(trained model in eval mode, normalised test images, labels)."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(10, 1, 8, 8, generator=g)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        pixels = ((prototypes[y] + 0.35 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1) * 255).round() / 255
        return normalize(pixels, MEAN, STD), y

    x_train, y_train = sample(2048)
    x_test, y_test = sample(N_TEST)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        idx = torch.randint(0, len(y_train), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval(), x_test, y_test


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def accuracy(model: nn.Module, pixels: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(normalize(pixels, MEAN, STD)).argmax(1) == y).float().mean().item()


def test_fgsm_one_step_by_hand_on_a_linear_model() -> None:
    """2 classes, label 0: d loss / d x = p1 (w1 - w0) / std, so the step is along w1 - w0 = (-1, 3, -1.5, 3)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 3.0]]))
        model[1].bias.zero_()
    mean, std = (0.5,), (0.25,)
    pixels = torch.tensor([0.05, 0.5, 0.3, 0.95]).view(1, 1, 1, 4)
    x, y = normalize(pixels, mean, std), torch.tensor([0])

    linf = fgsm(model, x, y, 0.1, mean=mean, std=std)
    assert torch.allclose(linf.flatten(), torch.tensor([0.0, 0.6, 0.2, 1.0]), atol=1e-6)  # 0.05-0.1, 0.95+0.1 clamp

    r = 0.5 / math.sqrt(1 + 9 + 2.25 + 9)  # eps / ||w1 - w0||
    l2 = fgsm(model, x, y, 0.5, mean=mean, std=std, norm="l2")
    assert torch.allclose(l2.flatten(), torch.tensor([0.0, 0.5 + 3 * r, 0.3 - 1.5 * r, 1.0]), atol=1e-6)


def test_fgsm_examples_identical_to_torchattacks(setup) -> None:
    torchattacks = _torchattacks()
    model, x, y = setup
    for eps in (0.02, 0.1, 0.2):
        atk = torchattacks.FGSM(model, eps=eps)
        atk.set_normalization_used(MEAN, STD)  # takes and returns normalised images, attacks in [0, 1]
        theirs = to_pixels(atk(x, y), MEAN, STD)
        ours = fgsm(model, x, y, eps, mean=MEAN, std=STD)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0), eps  # round-off of their normalised return only
        assert (ours - to_pixels(x, MEAN, STD)).abs().amax() > eps - 1e-6  # the attack did move


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("linf", 0.2), ("l2", 0.5), ("l2", 1.5)])
def test_pgd_without_random_start_identical_to_torchattacks(setup, norm: str, eps: float) -> None:
    torchattacks = _torchattacks()
    model, x, y = setup
    if norm == "linf":
        atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 10, steps=10, random_start=False)
    else:  # their 1e-10 added to the gradient norm is a 1e-3 bias on confidently classified examples: off here
        atk = torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / 10, steps=10, random_start=False,
                                 eps_for_division=0)
    atk.set_normalization_used(MEAN, STD)
    theirs = to_pixels(atk(x, y), MEAN, STD)
    ours = pgd(model, x, y, eps, mean=MEAN, std=STD, steps=10, norm=norm, random_start=False)  # default alpha
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm, eps_list", [("linf", (0.1, 0.15, 0.2)), ("l2", (0.5, 1.0, 1.5))])
def test_pgd_robust_accuracy_within_one_point_of_torchattacks(setup, norm: str, eps_list: tuple[float, ...]) -> None:
    """Random starts differ, so accuracies are compared, each the mean over 4 seeds (one run's seed-to-seed spread
    here is ~0.4 points, so a single pair could miss by 1 point by chance while the attacks agree)."""
    torchattacks = _torchattacks()
    model, x, y = setup
    seeds = range(4)
    ours = [robust_accuracy(model, batches(x, y), eps_list, mean=MEAN, std=STD, norm=norm, steps=10,
                            seed=s)["accuracy"] for s in seeds]
    for eps in eps_list:
        cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        atk = cls(model, eps=eps, alpha=2.5 * eps / 10, steps=10, random_start=True)
        atk.set_normalization_used(MEAN, STD)
        theirs = []
        for s in seeds:
            torch.manual_seed(100 + s)  # not our seeds: agreement must not come from shared random numbers
            adv = atk(x, y)
            with torch.no_grad():
                theirs.append((model(adv).argmax(1) == y).float().mean().item())
        ours_mean, theirs_mean = sum(a[eps] for a in ours) / len(ours), sum(theirs) / len(theirs)
        assert 0.0 < theirs_mean < 0.99, eps  # a point where the attack decides something
        assert abs(ours_mean - theirs_mean) <= 0.01, (eps, ours_mean, theirs_mean)


def test_perturbation_stays_in_the_eps_ball_and_in_pixel_range(setup) -> None:
    model, x, y = setup
    clean = to_pixels(x, MEAN, STD)
    g = torch.Generator().manual_seed(3)
    for eps in (0.05, 0.2):
        for adv in (fgsm(model, x, y, eps, mean=MEAN, std=STD),
                    pgd(model, x, y, eps, mean=MEAN, std=STD, restarts=3, generator=g),
                    pgd(model, x, y, eps, mean=MEAN, std=STD, steps=5, alpha=eps)):  # big steps: projection works
            delta = (adv - clean).abs()
            assert 0 <= adv.min() and adv.max() <= 1
            assert delta.amax() <= eps + 1e-6 and delta.amax() > eps - 1e-6
    for eps in (0.5, 2.0):
        for adv in (fgsm(model, x, y, eps, mean=MEAN, std=STD, norm="l2"),
                    pgd(model, x, y, eps, mean=MEAN, std=STD, norm="l2", restarts=3, generator=g),
                    pgd(model, x, y, eps, mean=MEAN, std=STD, norm="l2", steps=5, alpha=eps)):
            norms = (adv - clean).flatten(1).norm(dim=1)
            assert 0 <= adv.min() and adv.max() <= 1
            assert norms.max() <= eps * (1 + 1e-5) and norms.max() > eps * 0.99


def test_eps_zero_is_the_clean_accuracy(setup) -> None:
    model, x, y = setup
    data = batches(x, y)
    for attack in ("fgsm", "pgd"):
        result = robust_accuracy(model, data, [0.0, 0.15], mean=MEAN, std=STD, attack=attack)
        assert result["accuracy"][0.0] == evaluate(model, data)["accuracy"] > 0.95
        assert result["accuracy"][0.15] < result["accuracy"][0.0] - 0.2
        assert result["n"] == N_TEST
    assert torch.equal(pgd(model, x, y, 0.0, mean=MEAN, std=STD), to_pixels(x, MEAN, STD))


def test_restarts_keep_the_first_success_and_else_the_worst_loss(setup) -> None:
    """The same seed: restart 1 of 3 is the single run, so its successes must come back unchanged, the other
    examples can only gain loss, and the extra random starts fool some more."""
    model, x, y = setup
    one = pgd(model, x, y, 1.0, mean=MEAN, std=STD, norm="l2", generator=torch.Generator().manual_seed(5))
    three = pgd(model, x, y, 1.0, mean=MEAN, std=STD, norm="l2", restarts=3,
                generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits1, logits3 = model(normalize(one, MEAN, STD)), model(normalize(three, MEAN, STD))
    fooled1, fooled3 = logits1.argmax(1) != y, logits3.argmax(1) != y
    assert torch.equal(three[fooled1], one[fooled1])
    assert bool(fooled3[fooled1].all()) and fooled3.sum() > fooled1.sum()
    loss1 = nn.functional.cross_entropy(logits1, y, reduction="none")
    loss3 = nn.functional.cross_entropy(logits3, y, reduction="none")
    assert bool((loss3[~fooled3] >= loss1[~fooled3]).all())
    assert torch.equal(three, pgd(model, x, y, 1.0, mean=MEAN, std=STD, norm="l2", restarts=3,
                                  generator=torch.Generator().manual_seed(5)))  # seeded: reproducible


class _Spy(nn.Module):
    """Records the mode of every forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.modes = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.inner(x)


def test_attacks_run_in_eval_mode_restore_the_mode_and_leave_no_parameter_grads(setup) -> None:
    model, x, y = setup
    spy = _Spy(model).train()
    fgsm(spy, x, y, 0.1, mean=MEAN, std=STD)
    pgd(spy, x, y, 0.1, mean=MEAN, std=STD, restarts=2)
    robust_accuracy(spy, batches(x, y), [0.0, 0.1], mean=MEAN, std=STD)
    assert spy.modes and not any(spy.modes)
    assert spy.training and model.training  # the caller's mode is back
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_masking_checks_pass_on_a_normally_trained_model(setup) -> None:
    model, x, y = setup
    result = masking_checks(model, batches(x[:512], y[:512]), [0.05, 0.1, 0.15], mean=MEAN, std=STD)
    assert result["passed"] and result["more_steps_no_better"] and result["large_eps_near_zero"]
    assert result["fgsm_not_below_pgd"]
    assert result["pgd_large_eps"] <= 0.01 and result["large_eps"] == 1.0
    assert all(result["fgsm"][e] >= result["pgd"][e] >= result["pgd_more_steps"][e] - 0.01 for e in result["pgd"])


class _Saturated(nn.Module):
    """Logits x 1e4: the softmax saturates and the loss gradient underflows to 0 on every correctly classified
    example, the textbook gradient masking (it looks robust to gradient attacks, and is not)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 1e4


def test_masking_checks_flag_a_gradient_masked_model(setup) -> None:
    model, x, y = setup
    result = masking_checks(_Saturated(model), batches(x[:512], y[:512]), [0.1, 0.15], mean=MEAN, std=STD)
    assert result["pgd"][0.15] == 1.0  # PGD is blind here ...
    assert not result["large_eps_near_zero"] and not result["passed"]  # ... and the check says so


def test_autoattack_is_at_least_as_strong_as_pgd(setup, monkeypatch) -> None:
    torchattacks = _torchattacks()
    model, x, y = setup
    returned = []

    class Recorded(torchattacks.AutoAttack):
        def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            returned.append(super().__call__(images, labels))
            return returned[-1]

    monkeypatch.setattr(torchattacks, "AutoAttack", Recorded)
    data = [(x[:64], y[:64])]  # at eps 0.25 APGD-CE already breaks all: the slower FAB / Square have nothing left
    aa = autoattack_accuracy(model, data, [0.0, 0.25], mean=MEAN, std=STD)
    (adv,) = returned  # normalised, around the clean images: torchattacks was told the normalisation
    assert (to_pixels(adv, MEAN, STD) - to_pixels(x[:64], MEAN, STD)).abs().amax() <= 0.25 + 1e-5
    ours = robust_accuracy(model, data, [0.0, 0.25], mean=MEAN, std=STD)
    assert aa["attack"].startswith("autoattack") and aa["n"] == 64
    assert aa["accuracy"][0.0] == ours["accuracy"][0.0] > 0.95
    assert aa["accuracy"][0.25] <= ours["accuracy"][0.25] < ours["accuracy"][0.0]


def test_autoattack_without_torchattacks_is_a_one_line_error(setup, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes the import fail
    model, x, y = setup
    with pytest.raises(AttackError, match="torchattacks") as err:
        autoattack_accuracy(model, [(x[:4], y[:4])], [0.1], mean=MEAN, std=STD)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call, culprit", [
    (lambda m, x, y: robust_accuracy(m, [(x, y)], [0.1], mean=MEAN, std=STD, attack="cw"), "'cw'"),
    (lambda m, x, y: robust_accuracy(m, [(x, y)], [0.1], mean=MEAN, std=STD, norm="l1"), "'l1'"),
    (lambda m, x, y: robust_accuracy(m, [(x, y)], [0.1, -0.1], mean=MEAN, std=STD), "eps"),
    (lambda m, x, y: pgd(m, x, y, -1.0, mean=MEAN, std=STD), "eps"),
    (lambda m, x, y: pgd(m, x, y, 0.1, mean=MEAN, std=STD, steps=0), "steps"),
    (lambda m, x, y: pgd(m, x, y, 0.1, mean=MEAN, std=STD, restarts=0), "restarts"),
    (lambda m, x, y: pgd(m, x, y, 0.1, mean=MEAN, std=STD, alpha=0.0), "alpha"),
    (lambda m, x, y: fgsm(m, x, y, 0.1, mean=MEAN, std=STD, norm="L-inf"), "'L-inf'"),
    (lambda m, x, y: masking_checks(m, [(x, y)], [0.1], mean=MEAN, std=STD, steps=10, more_steps=10), "more_steps"),
])
def test_bad_input_is_a_one_line_error_naming_it(setup, call, culprit: str) -> None:
    model, x, y = setup
    with pytest.raises(ValueError, match=culprit) as err:
        call(model, x[:4], y[:4])
    assert "\n" not in str(err.value)
    assert isinstance(err.value, SharpvisionError)  # the CLI prints it as one line, exit code 2
