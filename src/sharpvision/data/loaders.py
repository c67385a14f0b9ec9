"""DataLoaders whose training order is a pure function of (seed, epoch), for exact resume.

The trainer builds a fresh training loader each epoch with ``train_loader_for_epoch`` (cheap: no data is
copied). Its order is ``epoch_order(n, seed, epoch)``; the per-worker seeds of the augmentations, when
``num_workers > 0``, also come from (seed, epoch); with ``num_workers == 0`` augmentations use torch's global RNG,
which the trainer checkpoints. Iterate each loader once: a second pass continues its generator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sharpvision.config import DataConfig
from sharpvision.data.bundle import DataBundle
from sharpvision.data.errors import DataError


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit seed for (seed, epoch), so nearby pairs give unrelated orders."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of epoch ``epoch``: one permutation of ``n`` drawn from (seed, epoch) alone.

    Both loader paths (DataLoader and device-resident) take their order from here, so they see the same batches.
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def train_loader_for_epoch(bundle: DataBundle, cfg: DataConfig, seed: int, epoch: int) -> DataLoader:
    """Shuffled training batches of epoch ``epoch``; drop_last keeps every batch full (and even, for Mixup)."""
    if len(bundle.train) < cfg.batch_size:
        raise DataError(f"the training set has {len(bundle.train)} examples, fewer than data.batch_size="
                        f"{cfg.batch_size}, so no full batch exists; lower data.batch_size or raise data.subset_train")
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))  # seeds the workers' augmentations
    order = epoch_order(len(bundle.train), seed, epoch).tolist()
    return DataLoader(bundle.train, batch_size=cfg.batch_size, sampler=order, drop_last=True, generator=generator,
                      num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())


def eval_loader(dataset: Dataset, cfg: DataConfig) -> DataLoader:
    """Batches of ``dataset`` in order, the last one possibly short."""
    return DataLoader(dataset, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers,
                      pin_memory=torch.cuda.is_available())


def build_loaders(bundle: DataBundle, cfg: DataConfig, seed: int,
                  epoch: int = 0) -> tuple[DataLoader, DataLoader | None, DataLoader]:
    """Train loader for ``epoch``, val loader (None without val) and test loader."""
    val = eval_loader(bundle.val, cfg) if bundle.val is not None else None
    return train_loader_for_epoch(bundle, cfg, seed, epoch), val, eval_loader(bundle.test, cfg)
