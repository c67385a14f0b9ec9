"""The trainer's data side in one object: device-resident batches when they fit and pay, DataLoaders otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from sharpvision.config import ConfigError, DataConfig
from sharpvision.data.bundle import DataBundle
from sharpvision.data.device import DeviceEvalLoader, DeviceImages, DeviceTrainLoader
from sharpvision.data.loaders import eval_loader, train_loader_for_epoch
from sharpvision.data.transforms import SMALL, TwoViews


def uses_device_loader(cfg: DataConfig, bundle: DataBundle, device: torch.device) -> bool:
    """``data.loader``: 'device' and 'dataloader' as asked; 'auto' is 'device' for small in-memory images on CUDA."""
    two_views = isinstance(getattr(bundle.train, "transform", None), TwoViews)  # contrastive: per-sample views only
    if cfg.loader == "device" and two_views:
        raise ConfigError("data.loader: 'device' cannot draw contrastive pre-training's two views per image; use "
                          "'auto' or 'dataloader'")
    if cfg.loader != "auto" or two_views:
        return cfg.loader == "device"
    images = getattr(bundle.train, "images", None)
    return device.type == "cuda" and isinstance(images, torch.Tensor) and images.shape[-1] <= SMALL


@dataclass
class Loaders:
    """Worker ``rank``'s training batches per epoch (order a function of (seed, epoch)), and its share of the
    test / val examples (evaluation sums are then added over the workers)."""

    bundle: DataBundle
    cfg: DataConfig
    seed: int
    train_data: DeviceImages | None  # None: the DataLoader path
    test: Iterable
    val: Iterable | None
    rank: int = 0
    world: int = 1

    @classmethod
    def build(cls, bundle: DataBundle, cfg: DataConfig, seed: int, device: torch.device, rank: int = 0,
              world: int = 1) -> Loaders:
        if uses_device_loader(cfg, bundle, device):
            def on_device(ds):  # noqa: ANN001, ANN202 - local shorthand
                return DeviceEvalLoader(DeviceImages.of(ds, bundle, device).part(rank, world), cfg.eval_batch_size)
            return cls(bundle, cfg, seed, DeviceImages.of(bundle.train, bundle, device), on_device(bundle.test),
                       on_device(bundle.val) if bundle.val is not None else None, rank, world)
        return cls(bundle, cfg, seed, None, eval_loader(bundle.test, cfg, rank, world),
                   eval_loader(bundle.val, cfg, rank, world) if bundle.val is not None else None, rank, world)

    @property
    def on_device(self) -> bool:
        return self.train_data is not None

    def train_for_epoch(self, epoch: int, start: int = 0) -> Iterable:
        """This worker's batches of ``epoch`` from batch ``start`` (a resume inside an epoch skips the done ones)."""
        if self.train_data is not None:
            return DeviceTrainLoader(self.train_data, self.cfg, self.seed, epoch, self.rank, self.world, start)
        return train_loader_for_epoch(self.bundle, self.cfg, self.seed, epoch, self.rank, self.world, start)
