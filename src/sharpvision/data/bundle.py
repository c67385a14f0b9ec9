"""``build_datasets``: one call from a DataConfig to transformed train / val / test datasets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from sharpvision.config import ContrastiveConfig, DataConfig
from sharpvision.data.datasets import LabeledImages, load_source
from sharpvision.data.mixup import build_mixup
from sharpvision.data.splits import capped_test_indices, split_train
from sharpvision.data.transforms import contrastive_transform, eval_transform, train_transform

BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DataBundle:
    """Everything the trainer needs from the data side; datasets yield (normalized float C x H x W, int label)."""

    train: Dataset  # training examples after val hold-out, fraction, cap and label noise; train transforms
    val: Dataset | None  # stratified hold-out of the training set (clean labels, eval transforms); None without
    test: Dataset  # eval transforms, labels never changed
    num_classes: int
    in_chans: int
    img_size: int
    mixup: BatchMixer | None  # batch-level Mixup/CutMix returning soft targets, "strong" only; else None
    train_labels: torch.Tensor  # labels actually trained on (after fraction + noise)
    clean_train_labels: torch.Tensor  # the same examples' original labels
    train_plain: Dataset  # the training examples and labels with eval transforms: the loss analysis measures
    mean: tuple[float, ...]  # per-channel normalization (for the device-resident path)
    std: tuple[float, ...]


def build_datasets(cfg: DataConfig, label_smoothing: float = 0.0, contrastive: ContrastiveConfig | None = None
                   ) -> DataBundle:
    """Load ``cfg.dataset`` and apply its splits and preprocessing.

    ``label_smoothing`` only goes into the Mixup soft targets; without Mixup the loss applies it. ``contrastive``
    (contrastive pre-training): every training example is two augmented views (2 x C x H x W) instead.
    """
    source = load_source(cfg)
    split = split_train(source.train_labels, cfg, source.num_classes)
    norm = (source.native_size, source.mean, source.std)
    eval_tf = eval_transform(cfg, *norm)
    test = capped_test_indices(len(source.test_labels), cfg)
    val = None
    if split.val is not None:
        val = LabeledImages(source.train_images, split.val, source.train_labels[split.val], eval_tf)
    return DataBundle(
        train=LabeledImages(source.train_images, split.train, split.labels, train_transform(cfg, *norm) if contrastive
                            is None else contrastive_transform(cfg, *norm, contrastive.crop_min, contrastive.jitter)),
        val=val,
        test=LabeledImages(source.test_images, test, source.test_labels[test], eval_tf),
        num_classes=source.num_classes,
        in_chans=source.in_chans,
        img_size=cfg.img_size or source.native_size,
        mixup=build_mixup(cfg, source.num_classes, label_smoothing) if contrastive is None else None,
        train_labels=split.labels,
        clean_train_labels=split.clean_labels,
        train_plain=LabeledImages(source.train_images, split.train, split.labels, eval_tf),
        mean=source.mean,
        std=source.std,
    )
