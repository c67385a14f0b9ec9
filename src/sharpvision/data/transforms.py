"""Per-sample preprocessing: "none" (normalize), "basic" (crop + flip) and "strong" (basic + RandAugment).

All pipelines are torchvision ``transforms.v2`` on uint8 tensors (PIL images are converted first), so they
pickle for DataLoader workers and draw their randomness from torch's RNG (restorable for exact resume).
Small images (<= 64 px: Fashion-MNIST, CIFAR) are augmented at their native size and then resized to
``img_size``; large ones (folder) get the Inception crop at ``img_size``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torchvision.transforms import v2

from sharpvision.config import ConfigError, DataConfig

SMALL = 64  # largest native side treated as a small image (pad-and-crop instead of Inception crop)
EVAL_CROP = 0.875  # large images: resize to img_size / 0.875, then center-crop img_size


class SpecRandAugment(v2.RandAugment):
    """torchvision's RandAugment driven by a timm spec ("rand-m9-mstd0.5-inc1").

    torchvision's rather than timm's ``rand_augment_transform``: timm's works on PIL images only, draws from
    Python's ``random`` (not restored with torch's RNG state) and its default fill colour breaks on 1-channel
    images; torchvision's runs on 1-channel 28 px uint8 tensors and uses torch's RNG. Magnitudes follow timm's
    0-10 scale (101 levels), with timm's Gaussian magnitude noise ``mstd`` drawn once per image.
    """

    LEVELS = 10  # timm's magnitude scale: m10 is the strongest setting of each op

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float) -> None:
        super().__init__(num_ops=num_ops, magnitude=round(magnitude * 10), num_magnitude_bins=self.LEVELS * 10 + 1,
                         interpolation=v2.InterpolationMode.BILINEAR)
        self.mean_magnitude = magnitude
        self.magnitude_std = magnitude_std

    def forward(self, *inputs: Any) -> Any:
        if self.magnitude_std > 0:
            level = float(torch.randn(())) * self.magnitude_std + self.mean_magnitude
            self.magnitude = round(min(max(level, 0.0), self.LEVELS) * 10)
        return super().forward(*inputs)


def rand_augment_params(spec: str) -> tuple[int, float, float]:
    """Parse a timm RandAugment spec into ``(num_ops, magnitude, magnitude_std)``.

    Spec: ``rand`` then ``-``-separated ``m`` (0-10), ``n`` (ops), ``mstd``, ``inc1``. Shared by the per-image
    ``rand_augment`` and the batched ``BatchRandAugment`` so one recipe means the same on both paths.
    torchvision's Posterize / Solarize strengthen with magnitude (timm's ``inc1`` variants), so ``inc0`` is
    refused rather than silently changed; timm's defaults apply otherwise (n2, m10, mstd0).
    """
    head, *parts = spec.split("-")
    values = {"n": 2.0, "m": 10.0, "mstd": 0.0, "inc": 1.0}
    for part in parts:
        match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", part)
        if not match or match[1] not in values:
            raise ConfigError(f"data.rand_augment: cannot parse {part!r} in {spec!r}; expected e.g. "
                              "'rand-m9-mstd0.5-inc1' (keys: m magnitude 0-10, n ops, mstd magnitude std, inc1)")
        values[match[1]] = float(match[2])
    if head != "rand" or not values["n"].is_integer() or values["m"] > SpecRandAugment.LEVELS or values["inc"] != 1:
        raise ConfigError(f"data.rand_augment: {spec!r} is not supported; it must start with 'rand' and have an "
                          "integer n, m <= 10 and (if given) inc1")
    return int(values["n"]), values["m"], values["mstd"]


def rand_augment(spec: str) -> SpecRandAugment:
    """The per-image RandAugment for a timm spec (see ``rand_augment_params`` for the syntax)."""
    num_ops, magnitude, magnitude_std = rand_augment_params(spec)
    return SpecRandAugment(num_ops=num_ops, magnitude=magnitude, magnitude_std=magnitude_std)


def _finish(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.ToPureTensor()]


def eval_transform(cfg: DataConfig, native_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Deterministic preprocessing for validation and test images."""
    size = cfg.img_size or native_size
    if native_size > SMALL:
        steps = [v2.Resize(int(size / EVAL_CROP)), v2.CenterCrop(size)]
    else:
        steps = [v2.Resize((size, size))] if size != native_size else []
    return v2.Compose([v2.ToImage(), *steps, *_finish(mean, std)])


def train_transform(cfg: DataConfig, native_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Training preprocessing for ``cfg.augment``.

    Small images are padded by 1/8 of their side and randomly cropped back (4 px at 32, 3 px at 28: the
    same relative shift as the usual CIFAR recipe); large ones get RandomResizedCrop(scale=(0.08, 1)).
    """
    if cfg.augment == "none":
        return eval_transform(cfg, native_size, mean, std)
    size = cfg.img_size or native_size
    small = native_size <= SMALL
    crop = v2.RandomCrop(native_size, padding=native_size // 8) if small else v2.RandomResizedCrop(size, (0.08, 1.0))
    steps: list[v2.Transform] = [v2.ToImage(), crop]
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.augment == "strong":
        steps.append(rand_augment(cfg.rand_augment))
    if small and size != native_size:
        steps.append(v2.Resize((size, size)))
    return v2.Compose([*steps, *_finish(mean, std)])


class TwoViews:
    """Two independent draws of ``transform`` of one image, stacked (2 x C x H x W): contrastive pre-training's
    positive pair."""

    def __init__(self, transform: v2.Transform) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.stack([self.transform(image), self.transform(image)])


def contrastive_transform(cfg: DataConfig, native_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                          crop_min: float, jitter: float) -> TwoViews:
    """SimCLR's views for small images (its CIFAR-10 recipe): random resized crop of area share [crop_min, 1],
    flip, colour jitter with p = 0.8 (brightness and contrast; saturation and hue on RGB too), greyscale with
    p = 0.2 on RGB; no blur at these sizes, as in SimCLR's CIFAR setting."""
    size = cfg.img_size or native_size
    rgb = len(mean) == 3
    colour = v2.ColorJitter(jitter, jitter, jitter if rgb else 0, min(jitter / 4, 0.5) if rgb else 0)
    steps: list[v2.Transform] = [v2.ToImage(), v2.RandomResizedCrop(size, scale=(crop_min, 1.0), antialias=True)]
    steps += [v2.RandomHorizontalFlip()] if cfg.hflip else []
    steps += [v2.RandomApply([colour], p=0.8)] + ([v2.RandomGrayscale(p=0.2)] if rgb else [])
    return TwoViews(v2.Compose([*steps, *_finish(mean, std)]))
