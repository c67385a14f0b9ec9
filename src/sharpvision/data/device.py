"""Device-resident data for datasets that fit in device memory (Fashion-MNIST, CIFAR): no DataLoader in the hot path.

The uint8 images go to the device once (Fashion-MNIST's 60k training images are 47 MB); each batch is a
gather, and the same augmentations as the per-sample CPU path (pad-and-crop, flip, RandAugment, resize,
normalize) run batched on the device (:mod:`sharpvision.data.batch_augment`). Batch order is the same pure
function of (seed, epoch) as the DataLoader path; augmentation draws from torch's RNG on the data's device,
which checkpoints save, so a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from sharpvision.config import ConfigError, DataConfig
from sharpvision.data.batch_augment import BatchRandAugment, random_crop, random_hflip
from sharpvision.data.bundle import DataBundle
from sharpvision.data.datasets import LabeledImages
from sharpvision.data.errors import DataError
from sharpvision.data.loaders import eval_part, worker_order
from sharpvision.data.transforms import SMALL


@dataclass
class DeviceImages:
    """Examples as uint8 N x C x H x W and int64 labels on one device, with their normalization and target size."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor  # C x 1 x 1, float32
    std: torch.Tensor
    size: int  # side of the model's input; images are resized to it after augmentation

    @classmethod
    def of(cls, dataset: LabeledImages, bundle: DataBundle, device: torch.device) -> DeviceImages:
        if not isinstance(dataset.images, torch.Tensor):
            raise ConfigError("data.loader: 'device' needs in-memory images (fashion_mnist, cifar10, cifar100, "
                              "digits); image folders decode from disk: use data.loader='dataloader'")
        images = dataset.images[dataset.indices].to(device)
        shape = (-1, 1, 1)
        return cls(images, dataset.labels.to(device), torch.tensor(bundle.mean, device=device).view(shape),
                   torch.tensor(bundle.std, device=device).view(shape), bundle.img_size)

    def __len__(self) -> int:
        return len(self.labels)

    def part(self, rank: int, world: int) -> DeviceImages:
        """Worker ``rank``'s contiguous share for evaluation (see ``eval_part``)."""
        share = eval_part(len(self), rank, world)
        return DeviceImages(self.images[share.start:share.stop], self.labels[share.start:share.stop], self.mean,
                            self.std, self.size)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> resized, normalized float32, as the CPU path's Resize + ToDtype + Normalize."""
        x = x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            x = x.round().clamp_(0, 255)  # the CPU path resizes uint8 images
        return (x / 255 - self.mean) / self.std


class DeviceTrainLoader:
    """One epoch of shuffled, augmented training batches; full batches only (as the DataLoader's drop_last)."""

    def __init__(self, data: DeviceImages, cfg: DataConfig, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0) -> None:
        if len(data) < cfg.batch_size:
            raise DataError(f"the training set has {len(data)} examples, fewer than data.batch_size="
                            f"{cfg.batch_size}, so no full batch exists; lower data.batch_size or raise "
                            "data.subset_train")
        if cfg.augment != "none" and data.images.shape[-1] > SMALL:
            raise ConfigError("data.loader: 'device' augments small images (pad-and-crop); for large images "
                              "use data.loader='dataloader' (Inception crop)")
        self.data, self.cfg, self.batch_size = data, cfg, cfg.batch_size // world
        # the DataLoader path's order: this worker's slice of each global batch, from batch ``start``
        self.order = worker_order(len(data), cfg.batch_size, seed, epoch, rank, world, start).to(data.images.device)
        self.rand_augment = BatchRandAugment.from_spec(cfg.rand_augment) if cfg.augment == "strong" else None

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batch_size
        for i in range(len(self)):
            idx = self.order[i * b:(i + 1) * b]
            x = self.data.images[idx]
            if self.cfg.augment != "none":
                x = random_crop(x, x.shape[-1] // 8)
                if self.cfg.hflip:
                    x = random_hflip(x)
                if self.rand_augment is not None:
                    x = self.rand_augment(x)
            yield self.data.finish(x), self.data.labels[idx]


class DeviceEvalLoader:
    """Evaluation batches in order (the last one possibly short); iterable any number of times."""

    def __init__(self, data: DeviceImages, batch_size: int) -> None:
        self.data, self.batch_size = data, batch_size

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.data), self.batch_size):
            yield self.data.finish(self.data.images[i:i + self.batch_size]), self.data.labels[i:i + self.batch_size]
