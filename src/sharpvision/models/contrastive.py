"""The network of contrastive pre-training: a timm backbone without classifier, SimCLR's projection head, and the
NT-Xent similarities as its output, so that the loss is plain cross-entropy.

Given a batch of B images as two views (B x 2 x C x H x W), the forward pass embeds all 2B views, normalises the
projections and returns the 2B x 2B' matrix of cosine similarities / temperature with each view's similarity to
itself masked out (B' = all workers' views under DDP: the negatives are gathered, with gradients). Row i's positive
is its other view, column ``pair_targets(2B)[i]``: cross-entropy against those targets is NT-Xent (Chen et al. 2020,
eq. 1), and the argmax accuracy is how often the positive is the nearest view. So the trainer's step, SAM's two
passes and the epoch tally need no change. On single images (B x C x H x W) it returns the backbone's features,
which the kNN evaluation and transfer use.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sharpvision.config import ContrastiveConfig

BACKBONE = "backbone."  # the state-dict prefix of the backbone (what finetune transfers)


class ContrastiveNet(nn.Module):
    """``backbone`` (a timm model built with ``num_classes=0``) + projection head + NT-Xent logits."""

    def __init__(self, backbone: nn.Module, cfg: ContrastiveConfig) -> None:
        super().__init__()
        width = backbone.num_features
        self.backbone = backbone
        self.proj = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, cfg.proj_dim))
        self.temperature = cfg.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return self.backbone(x)
        z = F.normalize(self.proj(self.backbone(x.flatten(0, 1))).float(), dim=1)  # view 2b, 2b + 1: image b
        everyone = _gather(z)
        logits = z @ everyone.T / self.temperature
        own = torch.arange(len(z), device=z.device) + _rank() * len(z)
        return logits.index_put((torch.arange(len(z), device=z.device), own), logits.new_tensor(float("-inf")))


def pair_targets(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Column of each view's positive in :class:`ContrastiveNet`'s logits for ``n`` local views (2 per image):
    the other view of the same image, offset by this worker's place among the gathered views."""
    return (torch.arange(n, device=device) ^ 1) + _rank() * n


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _gather(z: torch.Tensor) -> torch.Tensor:
    """Every worker's projections in rank order, differentiable (each worker's gradient reaches its own views)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(z))
