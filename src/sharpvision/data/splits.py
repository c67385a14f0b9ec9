"""Seeded draws on the training set: validation hold-out, stratified fraction, size caps and label noise.

Every draw uses its own NumPy stream seeded by ``(data.seed, stream)``, so the data seed is independent of
the training seed, one draw never shifts another, and nothing touches the global torch / NumPy RNGs.
Order: val hold-out -> fraction -> subset_train cap -> label noise (last, so the realised noise rate is
exact on the examples actually trained on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sharpvision.config import DataConfig

_VAL, _FRACTION, _SUBSET_TRAIN, _NOISE, _SUBSET_TEST = range(5)  # stream ids; never renumber (changes splits)


@dataclass(frozen=True)
class TrainSplit:
    """Positions in the source's training set, and the labels the training examples carry."""

    train: torch.Tensor  # sorted int64 indices of the training examples
    val: torch.Tensor | None  # sorted int64 indices of the held-out examples (clean labels), None without val
    labels: torch.Tensor  # labels used for training, after noise, aligned with ``train``
    clean_labels: torch.Tensor  # the original labels of ``train``


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def stratified_split(labels: np.ndarray, share: float, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``labels`` split per class into round(share * n_c) (at least 1) chosen ones and the rest.

    Each class takes a prefix of one seeded permutation, so for one seed a smaller share is a subset
    of a larger one (the paper's 1/10 inside 1/4 inside 1/2).
    """
    rng = _rng(seed, stream)
    chosen, rest = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        k = min(max(1, round(share * len(members))), len(members))
        chosen.append(members[:k])
        rest.append(members[k:])
    return np.sort(np.concatenate(chosen)), np.sort(np.concatenate(rest))


def random_cap(n: int, limit: int | None, seed: int, stream: int) -> np.ndarray:
    """Sorted positions of a seeded random subset of ``range(n)`` of size ``min(n, limit)`` (all when no limit)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(_rng(seed, stream).permutation(n)[:limit])


def noisy_labels(labels: torch.Tensor, rate: float, num_classes: int, seed: int, kind: str = "symmetric"
                 ) -> torch.Tensor:
    """Exactly round(rate * n) seeded examples get a wrong label: ``symmetric`` draws it uniformly from the other
    classes (Foret et al.'s noise); ``pairflip`` is asymmetric, class-pair noise: class c becomes c + 1 (mod the
    class count), the pair flipping of Han et al. 2018, which confuses each class with one other only and is
    harder to average out than symmetric noise. Both draw the same examples for one seed and rate."""
    rng = _rng(seed, _NOISE)
    n = len(labels)
    flip = torch.from_numpy(rng.choice(n, size=round(rate * n), replace=False))
    shift = torch.from_numpy(rng.integers(1, num_classes, size=len(flip))) if kind == "symmetric" else 1
    out = labels.clone()
    out[flip] = (labels[flip] + shift) % num_classes
    return out


def split_train(labels: torch.Tensor, cfg: DataConfig, num_classes: int) -> TrainSplit:
    """The validation hold-out, training subset and training labels that ``cfg`` asks for."""
    pool, val = np.arange(len(labels)), None
    np_labels = labels.numpy()
    if cfg.val_fraction > 0:
        val, pool = stratified_split(np_labels, cfg.val_fraction, cfg.seed, _VAL)
    if cfg.fraction < 1:
        pool = pool[stratified_split(np_labels[pool], cfg.fraction, cfg.seed, _FRACTION)[0]]
    pool = pool[random_cap(len(pool), cfg.subset_train, cfg.seed, _SUBSET_TRAIN)]
    train = torch.from_numpy(pool)
    clean = labels[train]
    noisy = (noisy_labels(clean, cfg.label_noise, num_classes, cfg.seed, cfg.label_noise_kind)
             if cfg.label_noise > 0 else clean.clone())
    return TrainSplit(train=train, val=None if val is None else torch.from_numpy(val), labels=noisy, clean_labels=clean)


def capped_test_indices(n: int, cfg: DataConfig) -> torch.Tensor:
    """Positions of the test examples kept under ``cfg.subset_test``."""
    return torch.from_numpy(random_cap(n, cfg.subset_test, cfg.seed, _SUBSET_TEST))
