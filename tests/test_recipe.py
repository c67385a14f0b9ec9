"""Recipe pieces: lr schedule shapes, weight-decay groups, optimizer factory, bf16 autocast with SAM."""

import math
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from sharpvision import models
from sharpvision.config import OptimConfig
from sharpvision.optim import SAM, build_optimizer, lr_factor, param_groups
from sharpvision.runtime import Runtime
from sharpvision.train import make_step


def test_warmup_then_cosine_and_linear() -> None:
    total, warm = 100, 10
    assert [lr_factor(s, total, warm, "cosine", 0.0) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, total, warm, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(55, total, warm, "cosine", 0.0) == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(100, total, warm, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, total, warm, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(32, total, warm, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    assert lr_factor(80, total, warm, "constant", 0.0) == 1.0
    assert lr_factor(0, total, 0, "linear", 0.0) == 1.0  # no warmup


def test_weight_decay_groups_exempt_1d_and_embeddings() -> None:
    model = models.create("vit_micro", num_classes=10, img_size=28, in_chans=1)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "norm.weight", "head.bias"} <= exempt
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert len(param_groups(model, 0.05, no_decay_1d=False)) == 1


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD), ("lamb", None)])
def test_build_optimizer(name: str, cls) -> None:
    model = nn.Linear(3, 2)
    plain = build_optimizer(model, OptimConfig(name=name))
    wrapped = build_optimizer(model, OptimConfig(name=name, sam=True, rho=0.2, adaptive=True, eta=0.03))
    assert isinstance(wrapped, SAM) and type(wrapped.base_optimizer) is type(plain)
    assert cls is None or type(plain) is cls
    group = wrapped.param_groups[0]
    assert group["rho"] == 0.2 and group["adaptive"] is True and group["eta"] == 0.03


def test_sam_step_under_bf16_autocast_keeps_fp32_weights() -> None:
    torch.manual_seed(0)
    model = models.create("vit_micro", num_classes=10, img_size=28, in_chans=1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3)
    rt = Runtime(torch.device("cpu"), torch.bfloat16)
    loss, logits = make_step(model, opt, nn.CrossEntropyLoss(), 1.0, rt.autocast)(
        torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert Runtime(torch.device("cpu"), None).autocast().__class__ is nullcontext
