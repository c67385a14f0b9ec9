"""NTK against an explicitly built J J^T, for both reductions, any chunking, and the model kinds we train."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from sharpvision import models
from sharpvision.analysis.ntk import ntk_condition_number, ntk_matrix


def explicit_ntk(model: nn.Module, x: torch.Tensor, reduction: str) -> torch.Tensor:
    """J J^T with J's rows from one autograd.grad per sample (summed logits) or per (sample, class)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        out = model(x[i:i + 1])[0]
        for o in [out.sum()] if reduction == "sum" else list(out):
            grads = torch.autograd.grad(o, params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    j = torch.stack(rows)
    return j @ j.T


def reference(model: nn.Module, x: torch.Tensor, reduction: str) -> torch.Tensor:
    """The explicit kernel of a float64 eval-mode copy (what ntk_matrix builds by default)."""
    ref = copy.deepcopy(model).double().eval()
    return explicit_ntk(ref, x.double(), reduction)


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


@pytest.mark.parametrize("reduction", ["sum", "full"])
def test_matches_explicit_jacobian_for_any_chunking(mlp: nn.Module, reduction: str) -> None:
    x = torch.randn(7, 6)
    expected = reference(mlp, x, reduction)
    assert expected.shape == ((7, 7) if reduction == "sum" else (21, 21))
    for chunk in (1, 3, 7, 100):
        for cache_gb in (4.0, 0.0):  # 0: recompute the second chunk of every pair
            theta = ntk_matrix(mlp, x, reduction, chunk=chunk, max_cache_gb=cache_gb)
            torch.testing.assert_close(theta, expected, rtol=1e-12, atol=1e-12)
    result = ntk_condition_number(mlp, x, reduction, chunk=3)
    eig = torch.linalg.eigvalsh(expected)
    assert result["eigenvalues"] == sorted(result["eigenvalues"], reverse=True)
    descending = torch.tensor(result["eigenvalues"], dtype=torch.float64)
    torch.testing.assert_close(descending, eig.flip(0), rtol=1e-9, atol=1e-12)
    assert result["kappa"] == pytest.approx((eig[-1] / eig[0]).item(), rel=1e-9)
    assert (result["n"], result["reduction"], result["dtype"]) == (7, reduction, "float64")
    assert result["settings"]["rows"] == len(expected)
    json.dumps(result)


def test_float32_and_batches_input(mlp: nn.Module) -> None:
    x = torch.randn(5, 6)
    theta = ntk_matrix(mlp, [(x[:2], torch.zeros(2)), (x[2:], torch.zeros(3))], dtype=torch.float32, chunk=2)
    assert theta.dtype == torch.float32
    torch.testing.assert_close(theta.double(), reference(mlp, x, "sum"), rtol=1e-4, atol=1e-5)
    assert all(p.dtype == torch.float32 for p in mlp.parameters())


def test_singular_kernel_has_infinite_kappa() -> None:
    model = nn.Linear(2, 1)  # 3 parameters, so at most rank 3 for 5 samples
    assert ntk_condition_number(model, torch.randn(5, 2))["kappa"] == float("inf")


def test_vit_with_fused_attention_left_on() -> None:
    torch.manual_seed(0)
    model = models.create("vit_micro", num_classes=10, img_size=28, in_chans=1, depth=1, embed_dim=16, num_heads=2)
    attention = [m for m in model.modules() if hasattr(m, "fused_attn")]
    for m in attention:
        m.fused_attn = True
    model.train()
    x = torch.randn(5, 1, 28, 28)
    theta = ntk_matrix(model, x, chunk=2)
    torch.testing.assert_close(theta, reference(model, x, "sum"), rtol=1e-10, atol=1e-10)
    assert all(m.fused_attn for m in attention) and model.training  # restored


def test_resnet_with_batchnorm_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = models.create("resnet_micro", num_classes=10, img_size=28, in_chans=1, channels=(4, 8, 8, 8), stem_chs=4)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics away from (0, 1), so eval mode visibly matters
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 1, 28, 28)
    result = ntk_condition_number(model, x, chunk=3)
    torch.testing.assert_close(torch.tensor(result["eigenvalues"], dtype=torch.float64),
                               torch.linalg.eigvalsh(reference(model, x, "sum")).flip(0), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="BatchNorm"):
        ntk_matrix(model, x, mode="train")
