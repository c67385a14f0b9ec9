"""The lean step: FLOP counts and MFU, one compiled graph for both SAM passes, channels_last, fused optimizers."""

from contextlib import nullcontext
from functools import partial

import pytest
import torch
from helpers import FAST, TINY
from torch import nn
from torch._dynamo.testing import CompileCounter

from sharpvision import config
from sharpvision.config import OptimConfig
from sharpvision.flops import passes_in_steps, peak_flops, train_flops_per_image
from sharpvision.optim import SAM, build_optimizer
from sharpvision.runtime import Runtime
from sharpvision.train import train
from sharpvision.train.step import make_step


def test_flops_per_image_is_the_hand_count_of_forward_and_backward() -> None:
    """Linear(a,b) -> ReLU -> Linear(b,c): forward 2ab + 2bc; backward 2ab + 2bc (weights) + 2bc (input of layer 2)."""
    a, b, c = 6, 16, 4
    model = nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(0.5), nn.Linear(b, c))
    bn_before = model[1].running_mean.clone()
    x = torch.randn(8, a) + 3
    rng_before = torch.get_rng_state()
    assert train_flops_per_image(model, x) == 4 * a * b + 6 * b * c
    assert torch.equal(model[1].running_mean, bn_before) and torch.equal(torch.get_rng_state(), rng_before)
    assert all(p.grad is None for p in model.parameters())  # no side effects on the live model


def test_passes_count_the_second_pass_only_on_sam_steps() -> None:
    for first in range(7):
        for count in range(9):
            for k in (1, 2, 3):
                brute = sum(2 if s % k == 0 else 1 for s in range(first, first + count))
                assert passes_in_steps(first, count, True, k) == brute
    assert passes_in_steps(5, 10, False) == 10


def test_peak_flops_needs_a_known_gpu_or_an_override() -> None:
    assert peak_flops(torch.device("cpu"), "bf16") is None
    assert peak_flops(torch.device("cpu"), "fp32", override_tflops=2.5) == 2.5e12


def test_both_sam_passes_and_every_step_reuse_one_compiled_graph() -> None:
    """BN statistics restored by snapshot (not by toggling momentum) and dropout replay keep dynamo on one graph."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 4))
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2, model=model)
    step = make_step(compiled, opt, nn.CrossEntropyLoss(), 1.0, nullcontext)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        step(torch.randn(32, 6, generator=g), torch.randint(0, 4, (32,), generator=g))
    assert counter.frame_count == 1


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_runtime_channels_last_and_fused_optimizer() -> None:
    cfg = config.load(TINY, [*FAST, "train.channels_last=true"])
    rt = Runtime(torch.device("cpu"), None)
    model = rt.prepare(cfg, conv_net(), torch.zeros(2, 1, 8, 8))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert rt.to_device(torch.zeros(2, 1, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert rt.flops_per_image > 0 and rt.peak_flops is None
    auto = Runtime(torch.device("cpu"), None)
    auto.prepare(config.load(TINY, FAST), conv_net(), torch.zeros(2, 1, 8, 8))
    assert not auto.channels_last  # auto: CUDA only

    torch.manual_seed(0)
    nets = [nn.Linear(5, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer(n, OptimConfig(sam=True), fused=f) for n, f in zip(nets, (False, True))]
    assert opts[1].base_optimizer.defaults["fused"] and not opts[0].base_optimizer.defaults.get("fused")
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for n, o in zip(nets, opts):
        for _ in range(3):
            make_step(n, o, nn.CrossEntropyLoss(), 1.0, nullcontext)(x, y)
    torch.testing.assert_close(nets[0].weight, nets[1].weight)


@pytest.mark.needs_fmnist
def test_trainer_reports_flops_and_mfu_and_trains_compiled(tmp_path, monkeypatch) -> None:
    """The trainer's SAM run compiles the ViT once for all its steps (dynamo with a counting backend: inductor
    itself is torch's to test, and costs a minute on 2 cores) and trains as the eager run does."""
    sam = [*FAST, "optim.sam=true", "schedule.epochs=1"]
    summary = train(config.load(TINY, [*sam, "train.peak_tflops=0.5"]), tmp_path / "a", progress=False)
    assert summary["flops_per_image"] > 0
    assert summary["mfu"] == pytest.approx(summary["tflops_per_s"] / 0.5)
    counter, real = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real(model, mode=None, backend=counter))
    compiled = train(config.load(TINY, [*sam, "train.compile=true"]), tmp_path / "b", progress=False)
    assert counter.frame_count == 1  # 3 SAM steps = 6 passes, one graph
    assert compiled["train_loss"] == pytest.approx(summary["train_loss"], rel=1e-5) and compiled["mfu"] is None


@pytest.mark.parametrize("name", ["vit_micro", "resnet_micro"])
def test_a_sam_step_holds_one_copy_of_the_weights_more_than_the_base_step(name: str, one_thread) -> None:
    """The trainer's own step (make_step, gradient clipping on), after a first step has made the optimizer state:
    the peak of a SAM step exceeds the AdamW step's by the weights' bytes (the backup SAM restores from), the
    BatchNorm statistics (kept so the second pass does not update them) and a few KiB that do not grow with the
    model (the RNG state kept to replay dropout masks, the first pass's loss and logits)."""
    from sharpvision import models
    from sharpvision.memory import peak_bytes

    peaks = {}
    for sam in (False, True):
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=28, in_chans=1, **(
            dict(depth=2) if name == "vit_micro" else {}))
        opt = build_optimizer(model, OptimConfig(sam=sam, rho=0.05))
        step = make_step(model, opt, nn.CrossEntropyLoss(), 1.0, nullcontext)
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        step(x, y)
        peaks[sam] = peak_bytes(partial(step, x, y))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    bn_stats = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "running_" in n)
    rest = peaks[True] - peaks[False] - weights - bn_stats
    assert 0 <= rest <= 8 * 1024, rest  # the RNG state (5,056 bytes on CPU) and the first pass's loss and logits
