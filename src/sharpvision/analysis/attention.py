"""CLS attention maps and attention rollout of a timm ViT (Chen et al. ICLR 2022, Fig. 5; Abnar & Zuidema 2020).

With fused SDPA the attention probabilities never exist as a tensor, so hooks on ``attn_drop`` (vit-explain,
timm's feature extractor) see nothing. We instead recompute softmax(q k^T * scale) from each timm
``Attention``'s input with its own ``qkv``, ``q_norm`` and ``k_norm`` in a forward hook: the model's real
forward keeps its fused path, and the probabilities equal those of timm's unfused path.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Attention
from torch import nn

from sharpvision.analysis.core import analysis_mode, settings

HEAD_FUSIONS = {"mean": lambda a: a.mean(dim=1), "max": lambda a: a.amax(dim=1), "min": lambda a: a.amin(dim=1)}


def _attention_layers(model: nn.Module) -> list[Attention]:
    """The model's timm ``Attention`` modules in forward order; a clear error for anything without a CLS token."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    if not layers or getattr(model, "cls_token", None) is None or not hasattr(model, "patch_embed"):
        raise ValueError(f"attention maps need a ViT with a class token (timm VisionTransformer with class_token=True"
                         f" and timm Attention blocks); {type(model).__name__} is not one")
    return layers


def _probabilities(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T * scale) [B, heads, T, T], in the same operation order as timm's unfused path."""
    b, t, _ = x.shape
    q, k, _ = attn.qkv(x).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def attention_maps(model: nn.Module, images: torch.Tensor, mode: str = "eval", head_fusion: str = "mean",
                   discard_ratio: float = 0.0) -> dict[str, Any]:
    """Per-layer attention probabilities of ``images``, their CLS-to-patch maps on the patch grid, and the rollout
    (:func:`attention_rollout` with ``head_fusion`` and ``discard_ratio``).

    Prefix tokens (CLS, then registers) are dropped from the maps: the CLS row is read at patch tokens
    ``num_prefix_tokens:`` and reshaped to ``patch_embed.grid_size``. Maps stay at grid resolution.
    """
    layers = _attention_layers(model)
    prefix, (gh, gw) = model.num_prefix_tokens, model.patch_embed.grid_size
    attentions: list[torch.Tensor] = []

    def record(module: Attention, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        attentions.append(_probabilities(module, inputs[0]))

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:  # fused attention stays on: the hooks recompute the probabilities from each block's input
        with analysis_mode(model, mode, math_attention=False), torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()

    if attentions[0].shape[-1] != prefix + gh * gw:
        raise ValueError(f"{attentions[0].shape[-1]} tokens do not match {prefix} prefix tokens + a {gh}x{gw} grid "
                         f"(images of {tuple(images.shape[-2:])} px, model built for another size?)")
    cls = torch.stack(attentions, dim=1)[:, :, :, 0, prefix:].unflatten(-1, (gh, gw))
    rollout = attention_rollout(attentions, head_fusion, discard_ratio)[:, 0, prefix:].unflatten(-1, (gh, gw))
    return {"attentions": attentions, "cls": cls, "cls_mean": cls.mean(dim=2), "rollout": rollout, "grid": (gh, gw),
            "settings": settings(n=len(images), mode=mode, head_fusion=head_fusion, discard_ratio=discard_ratio)}


def attention_rollout(attentions: list[torch.Tensor], head_fusion: str = "mean",
                      discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout [B, T, T] of per-layer attentions [B, heads, T, T] given first layer first.

    Per layer (as vit-explain, batched): fuse heads, zero the lowest ``discard_ratio`` of each image's entries
    except CLS->CLS, add the identity for the residual path, renormalise every row to sum 1, then multiply up
    the layers, R = A'_L ... A'_1. Row 0 is how much each token feeds the final CLS token.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {sorted(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    b, _, t, _ = attentions[0].shape
    eye = torch.eye(t, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = eye.expand(b, t, t)
    for layer in attentions:
        fused = HEAD_FUSIONS[head_fusion](layer)
        flat = fused.flatten(1)
        lowest = flat.topk(int(flat.shape[1] * discard_ratio), dim=1, largest=False).indices
        discard = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
        discard[:, 0] = False  # never the CLS -> CLS entry
        a = flat.masked_fill(discard, 0.0).view_as(fused) + eye
        rollout = (a / a.sum(dim=-1, keepdim=True)) @ rollout
    return rollout
