"""Datasets, splits, preprocessing and loaders: ``build_datasets(cfg.data)`` then ``build_loaders``.

Sources: Fashion-MNIST from the gzipped IDX files (default /usr/share/datasets/fashion-mnist, Debian package
dataset-fashion-mnist), CIFAR-10/100 through torchvision (default root ~/.cache/sharpvision/cifar) and
ImageNet-style folders (root/train, root/val). Each epoch, build the training loader with
``train_loader_for_epoch(bundle, cfg, seed, epoch)``: its order depends on (seed, epoch) only.
"""

from sharpvision.data.bundle import DataBundle, build_datasets
from sharpvision.data.errors import DataError
from sharpvision.data.loaders import build_loaders, eval_loader, train_loader_for_epoch

__all__ = ["DataBundle", "DataError", "build_datasets", "build_loaders", "eval_loader", "train_loader_for_epoch"]
