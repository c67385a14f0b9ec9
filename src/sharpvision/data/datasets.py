"""Dataset sources: raw training and test examples with their labels, before splits and transforms.

Fashion-MNIST, CIFAR and the digits are held in memory as uint8 tensors (N x C x H x W), so indexing is a view and
per-sample transforms run on tensors; ImageFolder images are decoded from disk on access.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from sharpvision.config import DataConfig
from sharpvision.data.errors import DataError
from sharpvision.data.idx import read_idx
from sharpvision.data.splits import stratified_split

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
CIFAR_ROOT = Path("~/.cache/sharpvision/cifar")  # outside the working directory, so any cwd finds it
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_ALL_FILES = ", ".join(name for pair in FASHION_MNIST_FILES.values() for name in pair)


class FolderImages:
    """Image files decoded on access as RGB PIL images; a bad file raises a DataError that names it."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        try:
            with Image.open(self.paths[i]) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{self.paths[i]}: cannot decode image ({e}); remove or replace the file") from None


Images = torch.Tensor | FolderImages  # index -> uint8 C x H x W tensor or PIL image


@dataclass(frozen=True)
class Source:
    """One dataset's raw examples and the constants that preprocessing needs."""

    train_images: Images
    train_labels: torch.Tensor  # int64, one per training image
    test_images: Images
    test_labels: torch.Tensor
    num_classes: int
    in_chans: int
    native_size: int  # side the images come at (folder: the customary 224 crop)
    mean: tuple[float, ...]
    std: tuple[float, ...]


class LabeledImages(Dataset):
    """The examples ``indices`` of ``images`` with ``labels`` (one per index), transformed per sample."""

    def __init__(self, images: Images, indices: torch.Tensor, labels: torch.Tensor,
                 transform: Callable[[object], torch.Tensor]) -> None:
        if len(indices) != len(labels):
            raise ValueError(f"{len(indices)} indices but {len(labels)} labels")
        self.images = images
        self.indices = indices
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[int(self.indices[k])]), int(self.labels[k])


def load_source(cfg: DataConfig) -> Source:
    """The raw dataset named by ``cfg.dataset`` from ``cfg.root`` (or the dataset's default place), restricted to
    ``cfg.classes`` when given."""
    source = _load(cfg)
    return source if cfg.classes is None else select_classes(source, cfg.classes)


def _load(cfg: DataConfig) -> Source:
    if cfg.dataset == "fashion_mnist":
        return _fashion_mnist(Path(cfg.root) if cfg.root else FASHION_MNIST_ROOT)
    if cfg.dataset in ("cifar10", "cifar100"):
        return _cifar(cfg.dataset, Path(cfg.root or CIFAR_ROOT).expanduser(), cfg.download)
    if cfg.dataset == "digits":
        return _digits()
    if cfg.dataset == "folder":
        if not cfg.root:
            raise DataError("dataset 'folder' needs data.root, a folder with train/ and val/ (ImageNet layout)")
        return _folder(Path(cfg.root).expanduser())
    raise DataError(f"unknown dataset {cfg.dataset!r}")


def select_classes(source: Source, classes: tuple[int, ...]) -> Source:
    """The examples of ``classes`` only, relabelled 0..k-1 in the order given: a class split for transfer
    (pre-train on some classes, fine-tune on the others) or a smaller task."""
    bad = [c for c in classes if c >= source.num_classes]
    if bad:
        raise DataError(f"data.classes: {bad} out of range, the dataset has classes 0-{source.num_classes - 1}")
    relabel = torch.full((source.num_classes,), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))

    def keep(images: Images, labels: torch.Tensor) -> tuple[Images, torch.Tensor]:
        idx = torch.nonzero(relabel[labels] >= 0).flatten()
        if isinstance(images, FolderImages):
            return FolderImages([images.paths[i] for i in idx.tolist()]), relabel[labels[idx]]
        return images[idx], relabel[labels[idx]]

    (train_images, train_labels), (test_images, test_labels) = (keep(source.train_images, source.train_labels),
                                                                 keep(source.test_images, source.test_labels))
    return dataclasses.replace(source, train_images=train_images, train_labels=train_labels, test_images=test_images,
                               test_labels=test_labels, num_classes=len(classes))


def _fashion_mnist(root: Path) -> Source:
    parts = {split: _fashion_mnist_split(root, *names) for split, names in FASHION_MNIST_FILES.items()}
    return Source(train_images=parts["train"][0], train_labels=parts["train"][1], test_images=parts["test"][0],
                  test_labels=parts["test"][1], num_classes=10, in_chans=1, native_size=28,
                  mean=(0.2860,), std=(0.3530,))


def _fashion_mnist_split(root: Path, images_name: str, labels_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_path, labels_path = root / images_name, root / labels_name
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DataError(f"Fashion-MNIST file {path} is missing: install it with "
                            f"`apt-get install dataset-fashion-mnist` (into {FASHION_MNIST_ROOT}) or set data.root "
                            f"to a folder holding {_ALL_FILES}")
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {tuple(images.shape[1:])} pixels, Fashion-MNIST has 28 x 28")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels but {images_path} holds {len(images)} images")
    if len(labels) and int(labels.max()) >= 10:
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range, Fashion-MNIST has classes 0-9")
    return images.unsqueeze(1), labels.long()


def _cifar(name: str, root: Path, download: bool) -> Source:
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        train = cls(os.fspath(root), train=True, download=download)
        test = cls(os.fspath(root), train=False, download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise DataError(f"{name} not found or corrupt under {root / cls.base_folder} ({e}); pass data.download=true "
                        "to fetch it through torchvision, or set data.root to a folder that holds it") from None

    def images(ds: torchvision.datasets.CIFAR10) -> torch.Tensor:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

    if name == "cifar10":
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    else:
        mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    return Source(train_images=images(train), train_labels=torch.tensor(train.targets), test_images=images(test),
                  test_labels=torch.tensor(test.targets), num_classes=len(train.classes), in_chans=3, native_size=32,
                  mean=mean, std=std)


DIGITS_TEST_SHARE = 1 / 3  # a fixed stratified third (599 images) is the test set, the same for every run


def _digits() -> Source:
    """scikit-learn's bundled handwritten digits: 1,797 real 8 x 8 grey images (16 grey levels) of 10 classes,
    no download. They have no official split: a stratified third, drawn with its own fixed seed, is the test set."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("dataset 'digits' needs scikit-learn (its bundled copy of the data): "
                        "pip install 'sharpvision[digits]' or pip install scikit-learn") from None
    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    test, train = stratified_split(digits.target, DIGITS_TEST_SHARE, seed=0, stream=0)
    return Source(train_images=images[train], train_labels=labels[train], test_images=images[test],
                  test_labels=labels[test], num_classes=10, in_chans=1, native_size=8, mean=(0.3055,),
                  std=(0.3760,))


def _folder(root: Path) -> Source:
    folders = {}
    for split in ("train", "val"):
        path = root / split
        if not path.is_dir():
            raise DataError(f"image folder {path} is missing: data.root must hold train/ and val/, "
                            "each with one sub-folder of images per class (ImageNet layout)")
        try:
            folders[split] = torchvision.datasets.ImageFolder(os.fspath(path))
        except FileNotFoundError as e:  # no class folders, or a class without images
            raise DataError(f"image folder {path}: {e}") from None
    train, val = folders["train"], folders["val"]
    if train.classes != val.classes:
        raise DataError(f"{root / 'train'} and {root / 'val'} have different class folders "
                        f"({len(train.classes)} vs {len(val.classes)}); they must match")
    return Source(train_images=FolderImages([p for p, _ in train.samples]), train_labels=torch.tensor(train.targets),
                  test_images=FolderImages([p for p, _ in val.samples]), test_labels=torch.tensor(val.targets),
                  num_classes=len(train.classes), in_chans=3, native_size=224, mean=IMAGENET_DEFAULT_MEAN,
                  std=IMAGENET_DEFAULT_STD)
