"""The device-resident loader (data.loader=device) against the DataLoader path it replaces, run here on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FAST, TINY
from PIL import Image

from sharpvision import config
from sharpvision.config import ConfigError, DataConfig
from sharpvision.data import Loaders, build_datasets, eval_loader, train_loader_for_epoch, uses_device_loader
from sharpvision.data.device import DeviceImages, DeviceTrainLoader
from sharpvision.train import train

pytestmark = pytest.mark.needs_fmnist
CPU = torch.device("cpu")


def data_cfg(**kw) -> DataConfig:
    return DataConfig(**{"subset_train": 300, "subset_test": 100, "batch_size": 64, "eval_batch_size": 64,
                         "loader": "device"} | kw)


def pixels(x: torch.Tensor, bundle) -> torch.Tensor:
    """Normalized float batch -> the uint8 levels it was made from."""
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (bundle.mean, bundle.std))
    return (x * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("img_size", [None, 32])
def test_without_augmentation_batches_equal_the_dataloaders(img_size):
    """Same order (seed, epoch), labels and pixels; resizing (28 -> 32) agrees within one intensity level."""
    cfg = data_cfg(augment="none", img_size=img_size)
    bundle = build_datasets(cfg)
    loaders = Loaders.build(bundle, cfg, seed=5, device=CPU)
    assert loaders.on_device
    ours = list(loaders.train_for_epoch(2))
    theirs = list(train_loader_for_epoch(bundle, cfg, 5, 2))
    assert len(ours) == len(theirs) == 300 // 64
    for (x, y), (x_ref, y_ref) in zip(ours, theirs):
        assert torch.equal(y, y_ref) and x.dtype == torch.float32 and x.shape == x_ref.shape
        if img_size is None:
            torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-6)
        else:
            assert (pixels(x, bundle).int() - pixels(x_ref, bundle).int()).abs().max() <= 1
    test = [b for b in loaders.test]
    assert torch.equal(torch.cat([y for _, y in test]), bundle.test.labels)
    ref = torch.cat([x for x, _ in eval_loader(bundle.test, cfg)])
    assert (pixels(torch.cat([x for x, _ in test]), bundle).int() - pixels(ref, bundle).int()).abs().max() <= 1
    assert len(list(loaders.test)) == len(test) == 2  # re-iterable, last batch short


def test_basic_augmentation_gives_shifted_and_flipped_windows_of_the_same_images():
    cfg = data_cfg(augment="basic")
    bundle = build_datasets(cfg)
    data = DeviceImages.of(bundle.train, bundle, CPU)
    torch.manual_seed(0)
    loader = DeviceTrainLoader(data, cfg, seed=1, epoch=0)
    p, n, side = 28 // 8, 0, 28
    shifts, flips = set(), 0
    for i, (x, y) in enumerate(loader):
        idx = loader.order[i * 64:(i + 1) * 64]
        assert torch.equal(y, data.labels[idx])
        source = torch.nn.functional.pad(data.images[idx], (p, p, p, p))
        out = pixels(x, bundle)
        for k in range(len(y)):
            found = [(dy, dx, flip) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for flip in (False, True)
                     if torch.equal(out[k], (lambda w: w.flip(-1) if flip else w)(
                         source[k, :, dy:dy + side, dx:dx + side]))]
            assert found, f"sample {k} of batch {i} is not a padded window of its image"
            shifts.add(found[0][:2])
            flips += found[0][2]
            n += 1
    assert len(shifts) > 20 and 0.3 < flips / n < 0.7  # the offsets and flips really vary


def test_strong_augmentation_is_seeded_and_stronger_than_basic():
    cfg = data_cfg(augment="strong", mixup=0.0, cutmix=0.0)
    bundle = build_datasets(cfg)
    data = DeviceImages.of(bundle.train, bundle, CPU)

    def first_batch(augment: str, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return next(iter(DeviceTrainLoader(data, data_cfg(augment=augment), seed=0, epoch=0)))[0]

    assert torch.equal(first_batch("strong", 0), first_batch("strong", 0))
    assert not torch.equal(first_batch("strong", 0), first_batch("strong", 1))
    assert not torch.equal(first_batch("strong", 0), first_batch("basic", 0))


def test_auto_picks_the_device_for_small_in_memory_sets_on_cuda_only(tmp_path):
    cfg = data_cfg(loader="auto", augment="none")
    bundle = build_datasets(cfg)
    assert uses_device_loader(cfg, bundle, torch.device("cuda"))
    assert not uses_device_loader(cfg, bundle, CPU)
    assert not uses_device_loader(data_cfg(loader="dataloader"), bundle, torch.device("cuda"))
    assert not Loaders.build(bundle, data_cfg(loader="dataloader"), 0, CPU).on_device

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                image = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
                image.save(tmp_path / split / cls / f"{i}.png")
    folder = DataConfig(dataset="folder", root=str(tmp_path), img_size=32, batch_size=2, loader="auto")
    folder_bundle = build_datasets(folder)
    assert not uses_device_loader(folder, folder_bundle, torch.device("cuda"))
    with pytest.raises(ConfigError, match="data.loader"):
        Loaders.build(folder_bundle, DataConfig(dataset="folder", root=str(tmp_path), loader="device"), 0, CPU)


def test_trainer_on_the_device_loader_matches_the_dataloader_and_resumes_exactly(tmp_path):
    """Without augmentation the inputs are the same floats, so the whole run is the same; with the strong
    recipe (RandAugment + Mixup on the device) a stopped and resumed run equals an uninterrupted one."""
    plain = ["data.augment=none", "train.device=cpu"]
    ours = train(config.load(TINY, [*FAST, *plain, "data.loader=device"]), tmp_path / "device", progress=False)
    theirs = train(config.load(TINY, [*FAST, *plain, "data.loader=dataloader"]), tmp_path / "loader", progress=False)
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key

    cfg = config.load(TINY, [*FAST, "data.loader=device", "data.augment=strong", "data.mixup=0.8", "data.cutmix=1.0"])
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", stop_after_epoch=1, progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert resumed[key] == full[key], key
