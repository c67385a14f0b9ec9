"""One table from our model names to timm classes and their arguments, plus ``create`` for any timm name.

Names follow Chen et al. (ICLR 2022, Table 2) for the 224 px models, with small-image (32 px) and CPU-sized
(28 px) variants for CIFAR / Fashion-MNIST. Every model is a timm class, so weights and blocks are timm's own;
nothing is ever pretrained. The exception is the ConvNeXt paper's roadmap (``roadmap_00_resnet50`` ...
``roadmap_15_convnext_t`` and their ``_micro`` versions): its in-between networks exist in no library, so
``models.roadmap`` assembles them from timm layers.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import timm
from timm.layers import StdConv2d
from timm.models.convnext import ConvNeXt
from timm.models.mlp_mixer import MlpMixer
from timm.models.resnet import Bottleneck, ResNet
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from sharpvision.errors import SharpvisionError
from sharpvision.models.cifar import cifar_convnext, cifar_resnet
from sharpvision.models.roadmap import STEPS, Step, roadmap_net

PAPER, SMALL, MICRO = "paper", "small-image", "CPU micro"


class UnknownModelError(SharpvisionError, ValueError):
    """Neither a registered name nor a timm model; the message lists close matches."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered name: a timm class (or thin builder) and its default arguments."""

    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    img_size: int  # the input size the architecture is meant for
    family: str
    description: str


_VIT = {"Ti": dict(embed_dim=192, depth=12, num_heads=3), "S": dict(embed_dim=384, depth=12, num_heads=6),
        "B": dict(embed_dim=768, depth=12, num_heads=12)}
_MIXER = {"S": dict(embed_dim=512, num_blocks=8), "B": dict(embed_dim=768, num_blocks=12)}
_RESNET_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _vit(size: str, patch: int, img: int, kind: str) -> ModelSpec:
    return ModelSpec(VisionTransformer, dict(patch_size=patch, **_VIT[size]), img, "vit",
                     f"ViT-{size}/{patch} ({kind}), timm VisionTransformer patch {patch}")


def _mixer(size: str, patch: int, img: int, kind: str) -> ModelSpec:
    return ModelSpec(MlpMixer, dict(patch_size=patch, **_MIXER[size]), img, "mixer",
                     f"Mixer-{size}/{patch} ({kind}), timm MlpMixer patch {patch}")


def _resnet(depth: int) -> ModelSpec:
    layers = _RESNET_LAYERS[depth]
    return ModelSpec(ResNet, dict(block=Bottleneck, layers=layers), 224, "resnet",
                     f"ResNet-{depth} ({PAPER}), timm ResNet Bottleneck layers {layers}")


def _bit(depth: int) -> ModelSpec:
    """BiT-style pre-activation ResNet, built with the arguments of timm's ``resnetv2_*_bit`` entrypoints."""
    layers = _RESNET_LAYERS[depth]
    kwargs = dict(layers=layers, width_factor=2, stem_type="fixed", conv_layer=partial(StdConv2d, eps=1e-8))
    return ModelSpec(ResNetV2, kwargs, 224, "resnet",
                     f"ResNet-{depth}x2 ({PAPER}), timm ResNetV2 BiT (GroupNorm, StdConv) layers {layers}, width x2")


def _cifar(label: str, layers: list[int], channels: tuple[int, ...], stem: int, img: int, kind: str) -> ModelSpec:
    return ModelSpec(cifar_resnet, dict(layers=layers, channels=channels, stem_chs=stem), img, "resnet",
                     f"{label} ({kind}), timm ResNet BasicBlock layers {layers} channels {channels}, "
                     f"3x3 stride-1 stem ({stem} ch), no max-pool")


def _wrn(depth: int, k: int) -> ModelSpec:
    """Wide ResNet (Zagoruyko & Komodakis): 3 stages of (depth - 4) / 6 blocks, widths 16k, 32k, 64k."""
    n = (depth - 4) // 6
    return ModelSpec(cifar_resnet, dict(layers=[n, n, n, 0], channels=(16 * k, 32 * k, 64 * k, 64 * k), stem_chs=16),
                     32, "resnet", f"WRN-{depth}-{k} ({SMALL}), timm ResNet BasicBlock (post-activation) "
                     f"3 stages x {n} blocks, widths {(16 * k, 32 * k, 64 * k)}, 3x3 stride-1 stem")


def _convnext(label: str, depths: tuple[int, ...], dims: tuple[int, ...], patch: int, img: int,
              kind: str) -> ModelSpec:
    """Patch 4 is timm's ConvNeXt as is; a smaller patch needs our stem swap (see ``cifar_convnext``)."""
    return ModelSpec(ConvNeXt if patch == 4 else cifar_convnext, dict(depths=depths, dims=dims, patch_size=patch),
                     img, "convnext", f"{label} ({kind}), timm ConvNeXt depths {depths} dims {dims}, "
                     f"patch-{patch} stem, total stride {8 * patch}")


def _roadmap(step: Step, micro: bool) -> tuple[str, ModelSpec]:
    """A step of the ConvNeXt paper's ResNet-50 -> ConvNeXt-T roadmap (``models.roadmap``), at 224 px or micro.

    Family 'resnet' for ResNet-50 and its stage-ratio change, 'convnext' from the patchify stem on.
    """
    design = step.micro if micro else step.design
    scale = ("the paper's step with depths and widths / 3, stem stride / 2" if micro else
             f"{step.paper_gflops} GFLOPs in the paper")
    description = (f"roadmap step {step.index:02d}, {step.change} ({MICRO if micro else PAPER}), {scale}; "
                   f"timm layers: {design.summary()}")
    return step.name + ("_micro" if micro else ""), ModelSpec(
        roadmap_net, dataclasses.asdict(design), 28 if micro else 224, "resnet" if step.index < 2 else "convnext",
        description)


_CONVNEXT_T = dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))
_CONVNEXT_S = dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768))
_CONVNEXT_B = dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024))

REGISTRY: dict[str, ModelSpec] = {
    # Chen et al. 2022, Table 2 (224 px)
    "vit_s32": _vit("S", 32, 224, PAPER),
    "vit_s16": _vit("S", 16, 224, PAPER),
    "vit_s14": _vit("S", 14, 224, PAPER),
    "vit_s8": _vit("S", 8, 224, PAPER),
    "vit_b32": _vit("B", 32, 224, PAPER),
    "vit_b16": _vit("B", 16, 224, PAPER),
    "mixer_s32": _mixer("S", 32, 224, PAPER),
    "mixer_s16": _mixer("S", 16, 224, PAPER),
    "mixer_s8": _mixer("S", 8, 224, PAPER),
    "mixer_b32": _mixer("B", 32, 224, PAPER),
    "mixer_b16": _mixer("B", 16, 224, PAPER),
    "mixer_b8": _mixer("B", 8, 224, PAPER),
    "resnet50": _resnet(50),
    "resnet101": _resnet(101),
    "resnet152": _resnet(152),
    "resnet50x2": _bit(50),
    "resnet101x2": _bit(101),
    "resnet152x2": _bit(152),
    "convnext_t": _convnext("ConvNeXt-T", **_CONVNEXT_T, patch=4, img=224, kind=PAPER),
    "convnext_s": _convnext("ConvNeXt-S", **_CONVNEXT_S, patch=4, img=224, kind=PAPER),
    "convnext_b": _convnext("ConvNeXt-B", **_CONVNEXT_B, patch=4, img=224, kind=PAPER),
    # small images (CIFAR 32 px; also run at 28 px)
    "vit_s4": _vit("S", 4, 32, SMALL),
    "vit_s2": _vit("S", 2, 32, SMALL),
    "vit_t4": _vit("Ti", 4, 32, SMALL),
    "mixer_s4": _mixer("S", 4, 32, SMALL),
    "mixer_s2": _mixer("S", 2, 32, SMALL),
    "resnet18_cifar": _cifar("ResNet-18", [2, 2, 2, 2], (64, 128, 256, 512), 64, 32, SMALL),
    "wrn16_8": _wrn(16, 8),
    "wrn28_10": _wrn(28, 10),
    "convnext_t_cifar": _convnext("ConvNeXt-T", **_CONVNEXT_T, patch=2, img=32, kind=SMALL),
    "convnext_n_cifar": _convnext("ConvNeXt-N", (2, 2, 6, 2), (48, 96, 192, 384), patch=2, img=32, kind=SMALL),
    # CPU-sized (Fashion-MNIST 28 px, a few seconds an epoch on 2 cores)
    "vit_micro": ModelSpec(VisionTransformer, dict(patch_size=4, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0),
                           28, "vit", f"ViT micro ({MICRO}), timm VisionTransformer patch 4, dim 96, depth 4, "
                           "3 heads, MLP x2, CLS token"),
    "mixer_micro": ModelSpec(MlpMixer, dict(patch_size=4, embed_dim=96, num_blocks=4), 28, "mixer",
                             f"Mixer micro ({MICRO}), timm MlpMixer patch 4, dim 96, 4 blocks"),
    "resnet_micro": _cifar("ResNet micro", [1, 1, 1, 1], (16, 32, 64, 128), 16, 28, MICRO),
    "convnext_micro": _convnext("ConvNeXt micro", (1, 1, 2, 1), (32, 64, 128, 256), patch=2, img=28, kind=MICRO),
    # twice the micro width (about 4x the parameters): the scale ladder's model rung
    "vit_micro_x2": ModelSpec(VisionTransformer, dict(patch_size=4, embed_dim=192, depth=4, num_heads=6,
                                                      mlp_ratio=2.0), 28, "vit",
                              f"ViT micro x2 ({MICRO}), timm VisionTransformer patch 4, dim 192, depth 4, 6 heads, "
                              "MLP x2: twice vit_micro's width"),
    "resnet_micro_x2": _cifar("ResNet micro x2", [1, 1, 1, 1], (32, 64, 128, 256), 32, 28, MICRO),
    # Liu et al. 2022, Fig. 2: ResNet-50 -> ConvNeXt-T one change at a time (224 px), then the same steps CPU-sized
    **dict(_roadmap(step, micro=False) for step in STEPS),
    **dict(_roadmap(step, micro=True) for step in STEPS),
}


def list_models() -> list[str]:
    """Our registered names, in table order (grouped by family and size)."""
    return list(REGISTRY)


def create(name: str, num_classes: int = 1000, img_size: int | None = None, in_chans: int = 3,
           **overrides: Any) -> nn.Module:
    """Build ``name`` untrained; ``overrides`` go to the timm constructor and beat the registered defaults.

    ``img_size=None`` means the size the architecture is meant for. CNNs take any size, so for them it is ignored.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        return _create_timm(_timm_name(name), num_classes, img_size, in_chans, overrides)
    kwargs = {**spec.kwargs, **overrides, "num_classes": num_classes, "in_chans": in_chans}
    if "img_size" in inspect.signature(spec.builder).parameters:
        kwargs["img_size"] = spec.img_size if img_size is None else img_size
    return spec.builder(**kwargs)


def family(name: str) -> str:
    """One of 'vit', 'mixer', 'resnet', 'convnext', or 'timm' for other timm names (analysis keys off this)."""
    spec = REGISTRY.get(name)
    if spec:
        return spec.family
    _timm_name(name)  # unknown names raise
    return "timm"


def describe(name: str) -> str:
    """One line for listings: what the name is and which timm class builds it."""
    spec = REGISTRY.get(name)
    if spec:
        return f"{spec.description}, {spec.img_size} px"
    return f"timm model {_timm_name(name)} (timm.create_model, untrained)"


def default_img_size(name: str) -> int:
    """Input size ``create(name)`` builds for; for other timm names, the one in timm's default config."""
    spec = REGISTRY.get(name)
    if spec:
        return spec.img_size
    return int(timm.get_pretrained_cfg_value(_timm_name(name), "input_size")[-1])


def _timm_name(name: str) -> str:
    """``name`` if timm knows it, else an error naming it and the closest of our names and timm's."""
    if timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, list(REGISTRY) + timm.list_models(), n=5)
    hint = f"close matches: {', '.join(close)}" if close else "see sharpvision.models.list_models()"
    raise UnknownModelError(f"unknown model {name!r}; {hint}")


def _create_timm(name: str, num_classes: int, img_size: int | None, in_chans: int,
                 overrides: dict[str, Any]) -> nn.Module:
    """Any other timm model. Its entrypoint takes ``**kwargs``, so only calling it shows whether it accepts
    ``img_size``; a CNN refuses it, and we then build it without (CNNs take any size)."""
    kwargs = dict(pretrained=False, num_classes=num_classes, in_chans=in_chans, **overrides)
    if img_size is None:
        return timm.create_model(name, **kwargs)
    try:
        return timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        return timm.create_model(name, **kwargs)
