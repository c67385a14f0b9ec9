"""sharpvision.models: every name builds, trains one step, has the paper's size, and matches timm's own models.

Driven by the registry, as timm's own tests are: the per-model tests loop over ``models.list_models()``, so a newly
registered name is built, stepped and checked for drop rates and its listing with no edit here. Sizes at 224 px
stay cheap by shrinking depth and width (``tiny``) or by building on the meta device.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import DropPath
from timm.models.resnetv2 import ResNetV2
from torch import nn

from sharpvision import models
from sharpvision.models import REGISTRY, UnknownModelError, registry

NAMES = models.list_models()
KIND_SIZE = {registry.PAPER: 224, registry.SMALL: 32, registry.MICRO: 28}  # size class -> the input it is built for

# The names the paper's Table 2 and our small sizes promise, pinned to their sizes; a name registered later is held
# to the size class its description names.
PAPER = ["vit_s32", "vit_s16", "vit_s14", "vit_s8", "vit_b32", "vit_b16",
         "mixer_s32", "mixer_s16", "mixer_s8", "mixer_b32", "mixer_b16", "mixer_b8",
         "resnet50", "resnet101", "resnet152", "resnet50x2", "resnet101x2", "resnet152x2",
         "convnext_t", "convnext_s", "convnext_b"]
SMALL = ["vit_s4", "vit_s2", "vit_t4", "mixer_s4", "mixer_s2", "resnet18_cifar", "wrn16_8", "wrn28_10",
         "convnext_t_cifar", "convnext_n_cifar"]
MICRO = ["vit_micro", "mixer_micro", "resnet_micro", "convnext_micro"]
PINNED = {**dict.fromkeys(PAPER, 224), **dict.fromkeys(SMALL, 32), **dict.fromkeys(MICRO, 28)}


def kind(name: str) -> str:
    """The size class a registered name's description states: '(paper)', '(small-image)' or '(CPU micro)'."""
    found = [k for k in KIND_SIZE if f"({k})" in REGISTRY[name].description]
    assert len(found) == 1, f"{name}: its description names no size class, or several: {REGISTRY[name].description}"
    return found[0]


def intended_size(name: str) -> int:
    """The input size a name must be built for: pinned above, else its description's size class."""
    return PINNED.get(name, KIND_SIZE[kind(name)])


BELOW_224 = [name for name in NAMES if kind(name) != registry.PAPER]  # the ones also run at Fashion-MNIST's 28 px


def tiny(name: str) -> dict:
    """Shrink depth/width to keep tests fast; patch size, stem and stage layout (what sets the geometry) stay."""
    spec = REGISTRY[name]
    if kind(name) == registry.MICRO:  # already CPU-sized
        return {}
    if spec.family == "vit":
        return dict(depth=1, embed_dim=64, num_heads=2)
    if spec.family == "mixer":
        return dict(num_blocks=1, embed_dim=64)
    if "depths" in spec.kwargs:  # timm ConvNeXt, and every step of the ConvNeXt roadmap (models.roadmap)
        return dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))
    layers = [min(n, 1) for n in spec.kwargs["layers"]]  # keeps WRN's empty 4th stage
    if "channels" in spec.kwargs:  # CIFAR stems: a quarter of the width (WRN's equal last two widths stay equal)
        return dict(layers=layers, channels=tuple(c // 4 for c in spec.kwargs["channels"]))
    if spec.builder is ResNetV2:  # BiT (width x2): the narrowest that GroupNorm's 32 groups allow
        return dict(layers=layers, channels=(64, 128, 256, 512), stem_chs=16)
    return dict(layers=layers, channels=(16, 32, 64, 128))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_train_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    logits = model(x)
    assert logits.shape == (x.shape[0], num_classes)
    logits.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", NAMES)
def test_train_step_at_intended_size(name: str, one_thread) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=7, **tiny(name))
    size = models.default_img_size(name)
    assert size == intended_size(name) == KIND_SIZE[kind(name)]
    check_train_step(model, torch.randn(2, 3, size, size), 7)


@pytest.mark.parametrize("name", BELOW_224)
def test_train_step_fashion_mnist_size(name: str, one_thread) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=28, in_chans=1, **tiny(name))
    check_train_step(model, torch.randn(2, 1, 28, 28), 10)


@pytest.mark.parametrize(("name", "img", "tokens"), [
    ("vit_s4", 28, 7 * 7 + 1), ("vit_s2", 28, 14 * 14 + 1), ("vit_s4", 32, 8 * 8 + 1), ("vit_s16", 224, 14 * 14 + 1),
    ("vit_micro", 28, 7 * 7 + 1), ("mixer_s4", 28, 7 * 7), ("mixer_s2", 28, 14 * 14), ("mixer_micro", 28, 7 * 7),
])
def test_token_grid_follows_patch_and_img_size(name: str, img: int, tokens: int) -> None:
    model = models.create(name, img_size=img, **tiny(name))
    features = model.forward_features(torch.randn(1, 3, img, img))
    assert features.shape[1] == tokens


@pytest.mark.parametrize(("name", "img", "final_map"), [
    ("resnet18_cifar", 32, 4), ("wrn16_8", 32, 8), ("resnet_micro", 28, 4),
    ("convnext_t_cifar", 32, 2), ("convnext_micro", 28, 1), ("resnet50", 224, 7), ("convnext_t", 224, 7),
])
def test_cnn_stems_keep_small_images_large(name: str, img: int, final_map: int) -> None:
    """CIFAR stems: total stride 8 for ResNet-18, 4 for WRN, 16 for ConvNeXt; ImageNet models stay at 32."""
    model = models.create(name, **tiny(name)).eval()
    features = model.forward_features(torch.randn(1, 3, img, img))
    assert features.shape[-2:] == (final_map, final_map)


# name: (num_classes, paper params, timm's equivalent or None)
SIZES = {
    "vit_s16": (1000, 22.0e6, "vit_small_patch16_224"),
    "vit_b16": (1000, 87e6, "vit_base_patch16_224"),
    "vit_s32": (1000, 22.9e6, "vit_small_patch32_224"),
    "vit_s8": (1000, 22.1e6, "vit_small_patch8_224"),
    "vit_b32": (1000, 88e6, "vit_base_patch32_224"),
    "mixer_b16": (1000, 59e6, "mixer_b16_224"),
    "mixer_s16": (1000, 18.5e6, "mixer_s16_224"),
    "mixer_b32": (1000, 60e6, "mixer_b32_224"),
    "resnet50": (1000, 25.6e6, "resnet50"),
    "resnet101": (1000, 44.5e6, "resnet101"),
    "resnet152": (1000, 60e6, "resnet152"),
    "resnet152x2": (1000, 236e6, "resnetv2_152x2_bit"),
    "convnext_t": (1000, 29e6, "convnext_tiny"),
    "convnext_s": (1000, 50e6, "convnext_small"),
    "convnext_b": (1000, 89e6, "convnext_base"),
    "resnet18_cifar": (10, 11.2e6, None),
    "wrn16_8": (10, 11.0e6, None),
    "wrn28_10": (10, 36.5e6, None),
}


@pytest.mark.parametrize("name", list(SIZES))
def test_paper_param_counts_and_same_architecture_as_timm(name: str) -> None:
    num_classes, paper, timm_name = SIZES[name]
    with torch.device("meta"):
        ours = models.create(name, num_classes=num_classes)
        theirs = timm_name and timm.create_model(timm_name, num_classes=num_classes)
    assert abs(n_params(ours) / paper - 1) < 0.03, f"{name}: {n_params(ours) / 1e6:.2f}M vs paper {paper / 1e6}M"
    if theirs is not None:
        shapes = {k: v.shape for k, v in ours.state_dict().items()}
        assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}


def test_any_timm_name_builds() -> None:
    model = models.create("resnet18", num_classes=10, in_chans=1, img_size=28)  # a CNN: img_size is ignored
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    vit = models.create("deit_tiny_patch16_224", num_classes=10, img_size=32, depth=1)
    assert vit.pos_embed.shape[1] == 2 * 2 + 1 and len(vit.blocks) == 1
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert models.family("resnet18") == "timm" and "resnet18" in models.describe("resnet18")


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="'vit_s61'") as err:
        models.create("vit_s61")
    assert isinstance(err.value, ValueError)
    assert "vit_s16" in str(err.value)
    with pytest.raises(ValueError, match="resnet_micro"):
        models.family("resnet_mcro")
    with pytest.raises(ValueError, match="unknown model"):
        models.describe("no_such_model_at_all")


def test_overrides_beat_registered_defaults() -> None:
    with torch.device("meta"):
        vit = models.create("vit_s16", depth=2)
        resnet = models.create("resnet_micro", layers=[2, 1, 1, 1])
        cnn = models.create("resnet50", img_size=64)  # accepted, ignored
    assert len(vit.blocks) == 2 and vit.embed_dim == 384
    assert len(resnet.layer1) == 2 and len(resnet.layer2) == 1
    assert isinstance(cnn, nn.Module)
    assert models.create("vit_s16", img_size=32, **tiny("vit_s16")).pos_embed.shape[1] == 2 * 2 + 1


@pytest.mark.parametrize("name", NAMES)
def test_drop_rates_reach_the_model(name: str) -> None:
    """Every registered name (on the meta device: nothing allocated, ~0.1 s for the largest)."""
    with torch.device("meta"):
        model = models.create(name, drop_rate=0.2, drop_path_rate=0.1)
    drop_probs = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert drop_probs and max(drop_probs) == pytest.approx(0.1)  # linear rule: last block gets the full rate
    head_dropout = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert getattr(model, "drop_rate", None) == 0.2 or 0.2 in head_dropout


def test_listing_describe_and_family() -> None:
    names = models.list_models()
    assert names == list(REGISTRY)  # what the tests above loop over is the whole table
    assert set(PAPER + SMALL + MICRO) <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        text = models.describe(name)
        assert "\n" not in text and f"{models.default_img_size(name)} px" in text and "timm" in text
        fam = models.family(name)
        assert fam in {"vit", "mixer", "resnet", "convnext"}
        assert name.startswith((fam, "roadmap_")) or (fam == "resnet" and name.startswith("wrn"))
