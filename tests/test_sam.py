"""SAM against hand-computed steps, and the properties the training loop relies on, held by every variant.

The shared properties (exact restore, rho = 0 is the base optimizer, BN statistics from the first pass, exact
resume, clear refusals) loop over ``sharpvision.optim.SAM_VARIANTS``, each also as ASAM (``adaptive=True``), so a
newly registered variant is held to them with no edit here. The hand computations are plain SAM's and ASAM's.
"""

import copy
from contextlib import nullcontext
from functools import partial

import pytest
import torch
from helpers import sam_variants
from torch import nn

from sharpvision.config import ScheduleConfig
from sharpvision.optim import SAM, build_scheduler
from sharpvision.passes import frozen_bn_stats
from sharpvision.train.step import make_step

torch.set_default_dtype(torch.float32)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

Variant = partial[SAM]  # SAM_VARIANTS[name] with adaptive bound: (params, base_optimizer, **kwargs) -> SAM
VARIANTS = sam_variants()  # every variant, plain and adaptive
E_IS_RHO_G = sam_variants(adaptive=(False,))  # the variants whose ascent is e = rho g / ||g|| (not ASAM's)
# Variants whose weights at rho = 0 are known to leave the base optimizer's (their tests xfail, strictly: once they
# match, the entry must go). None today: GSAM skips its combination when no ascent was taken.
NOT_BASE_AT_RHO_ZERO: dict[type, str] = {}


def quadratic(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L(w) = 1/2 w^T A w + b^T w with a fixed SPD A; returns (loss, A, b)."""
    a = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
    b = torch.tensor([0.2, -0.1, 0.4])
    return 0.5 * w @ a @ w + b @ w, a, b


def test_perturbation_and_step_match_hand_computation() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5])
    w = nn.Parameter(w0.clone())
    rho, lr = 0.1, 0.05
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)
    _, a, b = quadratic(w0)
    g = a @ w0 + b
    e = rho * g / g.norm()

    quadratic(w)[0].backward()
    opt.perturb()
    torch.testing.assert_close(w.detach(), w0 + e)
    opt.zero_grad()
    quadratic(w)[0].backward()
    opt.unperturb_and_step()
    expected = w0 - lr * (a @ (w0 + e) + b)  # descend with the gradient at w + e, from w
    torch.testing.assert_close(w.detach(), expected)


@pytest.mark.parametrize("eta", [0.01, 0.0])
def test_asam_scales_the_perturbation_elementwise(eta: float) -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5])
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=True, eta=eta, lr=0.1)
    _, a, b = quadratic(w0)
    g = a @ w0 + b
    t = w0.abs() + eta  # Kwon et al.: e = rho T^2 g / ||T g||, T = |w| + eta
    e = 0.5 * t**2 * g / (t * g).norm()
    quadratic(w)[0].backward()
    norm = opt.perturb()
    torch.testing.assert_close(w.detach(), w0 + e)
    torch.testing.assert_close(norm, (t * g).norm())


def test_asam_eta_lets_zero_weights_move() -> None:
    moved = []
    for eta in (0.01, 0.0):
        w = nn.Parameter(torch.tensor([0.0, 1.0]))
        opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=True, eta=eta, lr=0.1)
        (w * torch.tensor([1.0, 1.0])).sum().backward()
        opt.perturb()
        moved.append(w[0].item())
    assert moved[0] > 0 and moved[1] == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_restore_is_bitwise_exact_after_a_real_perturbation(variant: Variant) -> None:
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    opt = variant(model.parameters(), torch.optim.SGD, rho=0.37, lr=0.1)
    x, y = batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.perturb()
    assert not torch.equal(before[0], model[0].weight)
    opt.unperturb()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not w + e - e


@pytest.mark.parametrize("variant", VARIANTS)
def test_closure_step_inside_an_enclosing_autocast_sees_the_perturbed_weights(variant: Variant) -> None:
    model = net(bn=False, dropout=0.0)
    opt = variant(model.parameters(), torch.optim.SGD, rho=2.0, lr=0.1)
    x, y = batches(1)[0]
    losses = []

    def closure():
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
        return loss

    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast caches weight casts for the whole block
        opt.step(closure)
    assert losses[1] > losses[0] + 0.1, losses  # L(w + e) > L(w): the second pass used w + e


@pytest.mark.parametrize("variant", VARIANTS)
def test_grad_scaler_is_refused_clearly_and_the_weights_restored(variant: Variant) -> None:
    model = net(bn=False, dropout=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    opt = variant(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    x, y = batches(1)[0]
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    opt.perturb()
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    with pytest.raises(RuntimeError, match="GradScaler"):
        scaler.step(opt)
    assert not opt.perturbed and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_failing_closure_leaves_the_weights_at_w(variant: Variant) -> None:
    model = net(bn=False, dropout=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    opt = variant(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    x, y = batches(1)[0]
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("boom in the second pass")
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="boom"):
        opt.step(closure)
    assert not opt.perturbed and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_deepcopy_and_groups_added_to_the_base_optimizer(variant: Variant) -> None:
    model = net(bn=False, dropout=0.0)
    opt = variant(list(model.parameters())[:2], torch.optim.SGD, rho=0.1, lr=0.1)
    clone = copy.deepcopy(opt)
    assert isinstance(clone.base_optimizer, torch.optim.SGD) and clone.defaults["rho"] == 0.1
    opt.base_optimizer.add_param_group({"params": list(model.parameters())[2:]})
    x, y = batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.perturb()  # the new group takes SAM's defaults
    opt.unperturb_and_step()
    assert opt.param_groups[1]["rho"] == 0.1


@pytest.mark.parametrize("variant", VARIANTS)
def test_weight_decay_stays_out_of_the_perturbation(variant: Variant) -> None:
    moved = []
    for wd in (0.0, 10.0):
        w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        opt = variant([w], torch.optim.AdamW, rho=0.1, lr=0.1, weight_decay=wd)
        quadratic(w)[0].backward()
        opt.perturb()
        moved.append(w.detach().clone())
    torch.testing.assert_close(moved[0], moved[1])


@pytest.mark.parametrize("variant", E_IS_RHO_G)
def test_perturbation_norm_spans_all_groups(variant: Variant) -> None:
    w1, w2 = nn.Parameter(torch.tensor([3.0])), nn.Parameter(torch.tensor([4.0]))
    opt = variant([{"params": [w1]}, {"params": [w2], "weight_decay": 0.0}], torch.optim.SGD, rho=1.0, lr=0.1)
    (0.5 * w1**2 + 0.5 * w2**2).sum().backward()  # g = (3, 4), ||g|| = 5
    opt.perturb()
    torch.testing.assert_close(torch.cat([w1, w2]).detach(), torch.tensor([3.6, 4.8]))


def net(bn: bool = True, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.GELU(), nn.Dropout(dropout),
                                                                         nn.Linear(16, 4)]
    return nn.Sequential(*layers)


def batches(n: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 6, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(n)]


BASES = [
    (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("lamb", dict(lr=1e-2, weight_decay=0.05)),
]


def _cls(base):
    if base == "lamb":
        from timm.optim import Lamb
        return Lamb
    return base


def assert_same_weights_at_rho_zero(ref: nn.Module, other: nn.Module, variant: Variant) -> None:
    """Every parameter and buffer bit for bit; a variant of NOT_BASE_AT_RHO_ZERO must still differ, and xfails."""
    differ = [name for (name, a), b in zip(ref.state_dict().items(), other.state_dict().values())
              if not torch.equal(a, b)]
    if variant.func in NOT_BASE_AT_RHO_ZERO:
        assert differ, f"{variant.func.__name__} now matches the base optimizer: drop it from NOT_BASE_AT_RHO_ZERO"
        pytest.xfail(NOT_BASE_AT_RHO_ZERO[variant.func])
    assert not differ, differ


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, clip: float | None = 1.0) -> None:
    step = make_step(model, opt, nn.CrossEntropyLoss(), clip, nullcontext)
    torch.manual_seed(123)  # dropout draws
    for x, y in batches():
        step(x, y)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("base,kwargs", BASES, ids=["adamw", "sgd_nesterov", "lamb"])
def test_rho_zero_reproduces_the_base_optimizer_bit_for_bit(base, kwargs, variant: Variant) -> None:
    ref, sam = net(), net()
    train_steps(ref, _cls(base)(ref.parameters(), **kwargs))
    ref_rng = torch.get_rng_state()
    train_steps(sam, variant(sam.parameters(), _cls(base), rho=0.0, **kwargs))
    assert torch.equal(torch.get_rng_state(), ref_rng), "SAM must consume the random stream of one pass"
    assert_same_weights_at_rho_zero(ref, sam, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_rho_zero_closure_api_reproduces_the_base_optimizer(variant: Variant) -> None:
    ref, sam = net(), net()
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    opt_sam = variant(sam.parameters(), torch.optim.AdamW, rho=0.0, model=sam, lr=1e-2)
    for model, opt in ((ref, opt_ref), (sam, opt_sam)):
        torch.manual_seed(7)
        for x, y in batches():
            def closure(model=model, x=x, y=y):
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss
            if opt is opt_ref:
                opt.zero_grad()
                closure()
                opt.step()
            else:
                opt.step(closure)
    assert_same_weights_at_rho_zero(ref, sam, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sam_with_positive_rho_differs_from_base(variant: Variant) -> None:
    ref, sam = net(), net()
    train_steps(ref, torch.optim.AdamW(ref.parameters(), lr=1e-2))
    train_steps(sam, variant(sam.parameters(), torch.optim.AdamW, rho=0.5, lr=1e-2))
    assert not torch.equal(ref[0].weight, sam[0].weight)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bn_running_stats_come_from_the_first_pass_only(variant: Variant) -> None:
    model = net(dropout=0.0)
    probe = net(dropout=0.0)
    x, y = batches(1)[0]
    probe(x)  # one forward in train mode: the expected running statistics
    opt = variant(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    make_step(model, opt, nn.CrossEntropyLoss(), None, nullcontext)(x, y)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(model[1], name), getattr(probe[1], name)), name


def test_frozen_bn_stats_restores_buffers_exactly() -> None:
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}
    with frozen_bn_stats(model):
        model(torch.randn(32, 6))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_round_trip_continues_identically(variant: Variant) -> None:
    def make():
        model = net(dropout=0.0)
        return model, variant(model.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2, weight_decay=0.1)

    model, opt = make()
    train_steps(model, opt)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())  # as torch.save would freeze it
    assert saved_opt["state"], "the base optimizer's moments must be in the SAM state_dict"
    train_steps(model, opt)

    model2, opt2 = make()
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    train_steps(model2, opt2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_clipping_applies_to_the_descent_gradient() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5])
    model = nn.Module()
    model.w = nn.Parameter(w0.clone())
    rho, clip = 0.3, 1e-3
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=1.0)
    step = make_step(model, opt, lambda out, _: out, clip, nullcontext)
    model.forward = lambda x: quadratic(model.w)[0]
    step(torch.zeros(1), torch.zeros(1))
    _, a, b = quadratic(w0)
    g = a @ w0 + b
    g2 = a @ (w0 + rho * g / g.norm()) + b
    torch.testing.assert_close(model.w.detach(), w0 - clip * g2 / g2.norm(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_scheduler_attaches_to_the_wrapper(variant: Variant) -> None:
    model = net()
    opt = variant(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1.0)
    sched = build_scheduler(opt, ScheduleConfig(epochs=2, warmup_epochs=1, decay="linear"), steps_per_epoch=4)
    lrs = []
    w = next(model.parameters())
    for _ in range(8):
        lrs.append(opt.base_optimizer.param_groups[0]["lr"])
        w.sum().backward()
        opt.perturb()
        opt.unperturb_and_step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == pytest.approx([1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize("variant", VARIANTS)
def test_misuse_is_refused_clearly(variant: Variant) -> None:
    w = nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="rho"):
        variant([w], torch.optim.SGD, rho=-0.1, lr=0.1)
    opt = variant([w], torch.optim.SGD, rho=0.1, lr=0.1)
    with pytest.raises(RuntimeError, match="backward"):
        opt.perturb()
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()  # neither a closure nor a pending perturbation
    with pytest.raises(RuntimeError, match="before perturb"):
        opt.unperturb_and_step()
    (w**2).sum().backward()
    opt.perturb()
    with pytest.raises(RuntimeError, match="twice"):
        opt.perturb()
    with pytest.raises(RuntimeError, match="perturbed"):
        opt.state_dict()
    opt.unperturb_and_step()


def test_sam_every_k_runs_two_passes_only_on_every_kth_step_and_equals_interleaving() -> None:
    """SAM-k: steps 0 and 3 of 6 are SAM steps (2 passes), the rest plain base steps (1 pass), bit for bit."""
    model, ref = net(), net()
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2)
    ref_opt = SAM(ref.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2)
    index = iter(range(6))
    counter = {"i": 0}

    def step_index() -> int:
        counter["i"] = next(index)
        return counter["i"]

    passes: list[int] = []
    model.register_forward_hook(lambda *_: passes.append(counter["i"]))
    step = make_step(model, opt, nn.CrossEntropyLoss(), 1.0, nullcontext, sam_every=3, step_index=step_index)
    sam_step = make_step(ref, ref_opt, nn.CrossEntropyLoss(), 1.0, nullcontext)
    plain_step = make_step(ref, ref_opt.base_optimizer, nn.CrossEntropyLoss(), 1.0, nullcontext)
    torch.manual_seed(123)
    for x, y in batches(6):
        step(x, y)
    torch.manual_seed(123)
    for i, (x, y) in enumerate(batches(6)):
        (sam_step if i % 3 == 0 else plain_step)(x, y)
    assert passes == [0, 0, 1, 2, 3, 3, 4, 5]
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="sam_every > 1 needs a SAM optimizer"):
        make_step(model, opt.base_optimizer, nn.CrossEntropyLoss(), 1.0, nullcontext, sam_every=2,
                  step_index=step_index)
