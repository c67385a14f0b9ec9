"""Model zoo: paper-named, small-image and CPU-sized ViT / MLP-Mixer / ResNet / ConvNeXt, all built from timm."""

from sharpvision.models.registry import (
    REGISTRY,
    ModelSpec,
    UnknownModelError,
    create,
    default_img_size,
    describe,
    family,
    list_models,
)

__all__ = [
    "REGISTRY",
    "ModelSpec",
    "UnknownModelError",
    "create",
    "default_img_size",
    "describe",
    "family",
    "list_models",
]
