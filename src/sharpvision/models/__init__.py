"""Model zoo: paper-named, small-image and CPU-sized ViT / MLP-Mixer / ResNet / ConvNeXt, all built from timm.

``create(name, ...)`` builds any registered or timm name; ``from_config(cfg, data)`` builds a recipe's model.
"""

from sharpvision.models.recipe import from_config
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
    "from_config",
    "list_models",
]
