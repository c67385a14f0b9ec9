"""Datasets, splits, preprocessing and loaders: ``build_datasets(cfg.data)`` then ``Loaders.build``.

Sources: Fashion-MNIST from the gzipped IDX files (default /usr/share/datasets/fashion-mnist, Debian package
dataset-fashion-mnist), CIFAR-10/100 through torchvision (default root ~/.cache/sharpvision/cifar) and
ImageNet-style folders (root/train, root/val). Each epoch, build the training loader with
``train_loader_for_epoch(bundle, cfg, seed, epoch)``: its order depends on (seed, epoch) only. The trainer goes
through ``Loaders.build(bundle, cfg, seed, device)``, which keeps small in-memory sets on the GPU as uint8 and
augments whole batches there (``data.loader``), with the same batch order.
"""

from sharpvision.data.bundle import DataBundle, build_datasets
from sharpvision.data.errors import DataError
from sharpvision.data.loaders import eval_loader, train_loader_for_epoch
from sharpvision.data.pipeline import Loaders, uses_device_loader

__all__ = ["DataBundle", "DataError", "Loaders", "build_datasets", "eval_loader",
           "train_loader_for_epoch", "uses_device_loader"]
