"""DataLoaders whose training order is a pure function of (seed, epoch), for exact resume.

The trainer builds a fresh training loader each epoch with ``train_loader_for_epoch`` (cheap: no data is
copied). Its order is ``epoch_order(n, seed, epoch)``; the per-worker seeds of the augmentations, when
``num_workers > 0``, also come from (seed, epoch); with ``num_workers == 0`` augmentations use torch's global RNG,
which the trainer checkpoints. Iterate each loader once: a second pass continues its generator.

``data.num_workers`` is capped at the cores this process may use (``available_cores``): a recipe written for a
16-core GPU box runs on a laptop without more loader processes than cores contending for them. The workers'
augmentation seeds follow the worker count, so a run resumed on a machine with fewer cores draws other
augmentations from there on (the order of the examples is unchanged).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from sharpvision.config import DataConfig
from sharpvision.data.bundle import DataBundle
from sharpvision.data.errors import DataError


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one: a container's or a SLURM
    job's share, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workers(cfg: DataConfig) -> int:
    """``data.num_workers``, at most one loader process per available core."""
    return min(cfg.num_workers, available_cores())


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit seed for (seed, epoch), so nearby pairs give unrelated orders."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of epoch ``epoch``: one permutation of ``n`` drawn from (seed, epoch) alone.

    Both loader paths (DataLoader and device-resident) take their order from here, so they see the same batches.
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def worker_order(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0) -> torch.Tensor:
    """The examples worker ``rank`` of ``world`` trains on in epoch ``epoch``, from batch ``start`` on.

    Global batch s is ``epoch_order[s*B:(s+1)*B]``; worker r takes its r-th slice of B / world examples, so N workers
    together see exactly the batches one process sees, and a resume at batch ``start`` skips what was done.
    """
    order = epoch_order(n, seed, epoch)
    if world > 1:
        steps = n // batch_size
        order = order[:steps * batch_size].view(steps, world, batch_size // world)[:, rank].reshape(-1)
    return order[start * (batch_size // world):]


def train_loader_for_epoch(bundle: DataBundle, cfg: DataConfig, seed: int, epoch: int, rank: int = 0,
                           world: int = 1, start: int = 0) -> DataLoader:
    """Shuffled training batches of epoch ``epoch`` for worker ``rank`` (batch_size / world each) from batch
    ``start``; drop_last keeps every batch full (and even, for Mixup)."""
    if len(bundle.train) < cfg.batch_size:
        raise DataError(f"the training set has {len(bundle.train)} examples, fewer than data.batch_size="
                        f"{cfg.batch_size}, so no full batch exists; lower data.batch_size or raise data.subset_train")
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))  # seeds the workers' augmentations
    order = worker_order(len(bundle.train), cfg.batch_size, seed, epoch, rank, world, start).tolist()
    return DataLoader(bundle.train, batch_size=cfg.batch_size // world, sampler=order, drop_last=True,
                      generator=generator, num_workers=workers(cfg), pin_memory=torch.cuda.is_available())


def eval_part(n: int, rank: int = 0, world: int = 1) -> range:
    """Worker ``rank``'s contiguous share of ``n`` evaluation examples; the shares cover each example once."""
    return range(rank * n // world, (rank + 1) * n // world)


def eval_loader(dataset: Dataset, cfg: DataConfig, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of ``dataset`` (worker ``rank``'s share of it) in order, the last one possibly short."""
    if world > 1:
        dataset = Subset(dataset, eval_part(len(dataset), rank, world))
    return DataLoader(dataset, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=workers(cfg),
                      pin_memory=torch.cuda.is_available())

