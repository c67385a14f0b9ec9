"""DataLoader workers are capped at the cores this process may use: a recipe written for a 16-core GPU box
(fmnist/*.yaml ask for 8 workers) runs on a 2-core machine without 8 processes fighting over 2 cores, and
without PyTorch's warning about it."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

from sharpvision.config import DataConfig
from sharpvision.data import eval_loader, loaders, train_loader_for_epoch
from sharpvision.data.bundle import DataBundle


@pytest.fixture
def bundle() -> DataBundle:
    data = TensorDataset(torch.zeros(64, 1, 4, 4), torch.zeros(64, dtype=torch.long))
    labels = torch.zeros(64, dtype=torch.long)
    return DataBundle(train=data, val=None, test=data, num_classes=2, in_chans=1, img_size=4, mixup=None,
                      train_labels=labels, clean_train_labels=labels, train_plain=data, mean=(0.0,), std=(1.0,))


@pytest.mark.parametrize(("asked", "cores", "used"), [(8, 2, 2), (2, 16, 2), (0, 2, 0), (64, 1, 1)])
def test_loaders_use_at_most_the_cores_available(bundle: DataBundle, monkeypatch, asked: int, cores: int,
                                                 used: int) -> None:
    monkeypatch.setattr(loaders, "available_cores", lambda: cores)
    cfg = DataConfig(num_workers=asked, batch_size=16)
    assert train_loader_for_epoch(bundle, cfg, seed=0, epoch=0).num_workers == used
    assert eval_loader(bundle.test, cfg).num_workers == used


def test_asking_for_more_workers_than_cores_gives_no_warning(bundle: DataBundle) -> None:
    cores = loaders.available_cores()
    assert 1 <= cores <= (torch.multiprocessing.cpu_count() or cores)
    loader = eval_loader(bundle.test, DataConfig(num_workers=cores + 8))
    assert loader.num_workers == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's "this DataLoader will create N worker processes" would raise
        loader.check_worker_number_rationality()
