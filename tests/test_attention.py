"""Recomputed attention against timm's unfused path, rollout against hand-computed products, and refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sharpvision import models
from sharpvision.analysis.attention import attention_maps, attention_rollout

TINY_VIT = dict(num_classes=3, img_size=8, in_chans=1, patch_size=4, depth=2, embed_dim=16, num_heads=2)


def tiny_vit(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return models.create("vit_micro", **{**TINY_VIT, **overrides})


def unfused_probabilities(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """timm's own probabilities: with fused_attn off, the input of ``attn_drop`` is softmax(q k^T * scale)."""
    model = copy.deepcopy(model).eval()
    seen: list[torch.Tensor] = []
    for block in model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        model(images)
    return seen


@pytest.mark.parametrize("overrides", [{}, dict(qk_norm=True, reg_tokens=2)], ids=["plain", "qk_norm+registers"])
def test_probabilities_match_timm_unfused_path(overrides: dict) -> None:
    model = tiny_vit(**overrides)
    images = torch.randn(3, 1, 8, 8)
    maps = attention_maps(model, images)
    expected = unfused_probabilities(model, images)
    assert len(maps["attentions"]) == 2
    for got, want in zip(maps["attentions"], expected):
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got.sum(dim=-1), torch.ones(3, 2, got.shape[-1]))
    prefix = model.num_prefix_tokens
    assert maps["grid"] == (2, 2)
    assert maps["cls"].shape == (3, 2, 2, 2, 2) and maps["cls_mean"].shape == (3, 2, 2, 2)
    torch.testing.assert_close(maps["cls"][:, 1, 0].flatten(1), expected[1][:, 0, 0, prefix:])
    torch.testing.assert_close(maps["rollout"].flatten(1), attention_rollout(expected)[:, 0, prefix:])


def test_forward_unchanged_fused_path_kept_and_hooks_removed() -> None:
    model = tiny_vit().train()
    for block in model.blocks:
        block.attn.fused_attn = True
    images = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        plain = model.eval()(images)
    model.train()
    seen = {}
    handles = [model.register_forward_hook(lambda _m, _i, out: seen.update(out=out)),
               model.blocks[0].attn.register_forward_hook(lambda m, _i, _o: seen.update(fused=m.fused_attn))]
    attention_maps(model, images)
    for handle in handles:
        handle.remove()
    assert torch.equal(seen["out"], plain) and seen["fused"] is True
    assert model.training
    assert not [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]


def test_rollout_hand_computed_in_layer_order() -> None:
    a1 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a2 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    # (A2 + I)/2 @ (A1 + I)/2; the other order gives row 0 = [.5, .5, 0]
    expected = torch.tensor([[0.75, 0.25, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    rollout = attention_rollout([a1[None, None], a2[None, None]])
    torch.testing.assert_close(rollout, expected[None])


def test_rollout_discard_keeps_cls_and_renormalises_rows() -> None:
    a = torch.tensor([[[[0.1, 0.9], [0.6, 0.4]]]])
    # the 2 lowest of 4 entries are 0.1 (CLS -> CLS, kept) and 0.4; rows of A + I then sum to 2 and 1.6
    expected = torch.tensor([[[1.1 / 2, 0.9 / 2], [0.6 / 1.6, 1.0 / 1.6]]])
    torch.testing.assert_close(attention_rollout([a], discard_ratio=0.5), expected)


@pytest.mark.parametrize("fusion, expected", [("mean", [[0.75, 0.25], [0.25, 0.75]]),
                                              ("max", [[2 / 3, 1 / 3], [1 / 3, 2 / 3]]),
                                              ("min", [[1.0, 0.0], [0.0, 1.0]])])
def test_head_fusion(fusion: str, expected: list[list[float]]) -> None:
    heads = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    torch.testing.assert_close(attention_rollout([heads], head_fusion=fusion), torch.tensor([expected]))


def test_rollout_batched_equals_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    layers = [torch.randn(2, 3, 5, 5).softmax(dim=-1) for _ in range(3)]
    batched = attention_rollout(layers, head_fusion="max", discard_ratio=0.3)
    for i in range(2):
        alone = attention_rollout([a[i:i + 1] for a in layers], head_fusion="max", discard_ratio=0.3)
        torch.testing.assert_close(batched[i:i + 1], alone)


@pytest.mark.parametrize("name, overrides", [("mixer_micro", {}), ("resnet_micro", {}),
                                             ("vit_micro", dict(class_token=False, global_pool="avg"))])
def test_models_without_cls_attention_are_refused(name: str, overrides: dict) -> None:
    model = models.create(name, num_classes=3, img_size=28, in_chans=1, **overrides)
    with pytest.raises(ValueError, match=f"ViT with a class token.*{type(model).__name__}"):
        attention_maps(model, torch.randn(1, 1, 28, 28))
