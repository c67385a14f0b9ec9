"""CIFAR-style stems for timm's ResNet and ConvNeXt, so 28-32 px inputs are not shrunk 4x before the first stage.

timm's constructors have no such stem, so we build timm's class and swap the stem conv; blocks, heads and their
init stay timm's.
"""

from __future__ import annotations

from typing import Any

from timm.layers import trunc_normal_
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, ResNet
from torch import nn


def cifar_resnet(stem_chs: int = 64, block: type[nn.Module] = BasicBlock, **kwargs: Any) -> ResNet:
    """timm ``ResNet`` whose stem is one 3x3 stride-1 conv with no max-pool (He et al. 2016 CIFAR, WRN).

    timm's plain stem always has 64 channels, but its 'deep' stem ends at ``2 * stem_width``; so we build the
    deep stem at the width we want and swap it for the single conv. A stage with 0 blocks is an empty
    ``nn.Sequential`` (an identity), which gives three-stage nets like WRN.
    """
    if stem_chs % 2:
        raise ValueError(f"stem_chs must be even, got {stem_chs}")
    model = ResNet(block=block, stem_type="deep", stem_width=stem_chs // 2, **kwargs)
    model.conv1 = nn.Conv2d(kwargs.get("in_chans", 3), stem_chs, kernel_size=3, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm inits its convs
    model.maxpool = nn.Identity()
    return model


def cifar_convnext(patch_size: int = 2, **kwargs: Any) -> ConvNeXt:
    """timm ``ConvNeXt`` with a ``patch_size`` x ``patch_size`` stride-``patch_size`` stem, stage 1 unstrided.

    timm's own ``patch_size=2`` makes stage 1 downsample too (to keep total stride 32), which leaves 1x1 maps
    at 28-32 px; we build the usual patch-4 layout and swap in the smaller patch, for a total stride of
    ``8 * patch_size`` (stage maps 16, 8, 4, 2 at 32 px with patch 2).
    """
    model = ConvNeXt(**kwargs)
    old = model.stem[0]
    model.stem[0] = nn.Conv2d(old.in_channels, old.out_channels, patch_size, stride=patch_size,
                              bias=old.bias is not None)
    trunc_normal_(model.stem[0].weight, std=0.02)  # as timm inits ConvNeXt convs
    if model.stem[0].bias is not None:
        nn.init.zeros_(model.stem[0].bias)
    return model
