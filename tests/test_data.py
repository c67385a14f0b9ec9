"""sharpvision.data: sources, splits, label noise, preprocessing, Mixup and loader order."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import HAVE_FMNIST, NO_FMNIST
from PIL import Image

from sharpvision.config import ConfigError, DataConfig
from sharpvision.data import DataError, build_datasets, eval_loader, train_loader_for_epoch
from sharpvision.data.datasets import load_source
from sharpvision.data.splits import split_train
from sharpvision.data.transforms import SpecRandAugment, rand_augment


@pytest.fixture(scope="module")
def source():
    if not HAVE_FMNIST:  # its tests carry needs_fmnist; this guards one added without it
        pytest.skip(NO_FMNIST)
    return load_source(DataConfig())


def per_class(labels: torch.Tensor) -> np.ndarray:
    return np.bincount(labels.numpy(), minlength=10)


# ---------------------------------------------------------------- synthetic IDX files

def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_fmnist(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """A tiny valid Fashion-MNIST folder: random images, labels 0..9 cycling."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28))
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    return root


def test_synthetic_fashion_mnist_loads(tmp_path):
    bundle = build_datasets(DataConfig(root=str(write_fmnist(tmp_path)), augment="none"))
    assert (len(bundle.train), len(bundle.test)) == (40, 20)
    assert bundle.train_labels.tolist() == [i % 10 for i in range(40)]


@pytest.mark.parametrize("defect", ["missing", "magic", "truncated_gzip", "short_payload", "count_mismatch"])
def test_corrupt_fashion_mnist_raises_data_error_naming_file(tmp_path, defect):
    root = write_fmnist(tmp_path)
    bad = root / ("train-labels-idx1-ubyte.gz" if defect == "count_mismatch" else "train-images-idx3-ubyte.gz")
    images = np.zeros((40, 28, 28))
    if defect == "missing":
        bad.unlink()
    elif defect == "magic":
        bad.write_bytes(gzip.compress(idx_bytes(images, magic=0x0801)))
    elif defect == "truncated_gzip":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif defect == "short_payload":
        bad.write_bytes(gzip.compress(idx_bytes(images)[:-100]))
    else:
        bad.write_bytes(gzip.compress(idx_bytes(np.arange(39) % 10)))
    with pytest.raises(DataError) as err:
        build_datasets(DataConfig(root=str(root)))
    message = str(err.value)
    assert str(bad) in message
    expected = {"missing": "apt-get install dataset-fashion-mnist", "magic": "magic number",
                "truncated_gzip": "gzip", "short_payload": "wrong length", "count_mismatch": "39 labels"}[defect]
    assert expected in message


# ---------------------------------------------------------------- real Fashion-MNIST

@pytest.mark.needs_fmnist
def test_fashion_mnist_real_files():
    bundle = build_datasets(DataConfig(augment="none"))
    assert (len(bundle.train), len(bundle.test)) == (60000, 10000)
    assert (bundle.num_classes, bundle.in_chans, bundle.img_size, bundle.val, bundle.mixup) == (10, 1, 28, None, None)
    image, label = bundle.train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and type(image) is torch.Tensor
    assert label == 9 and bundle.test[0][1] == 9  # the first training image and first test image are ankle boots
    assert per_class(bundle.train_labels).tolist() == [6000] * 10
    assert torch.equal(bundle.train_labels, bundle.clean_train_labels)


@pytest.mark.needs_fmnist
def test_fraction_is_stratified_seeded_and_nested(source):
    picks = {}
    for f in (0.5, 0.25, 0.1):
        split = split_train(source.train_labels, DataConfig(fraction=f, seed=3), 10)
        counts = per_class(source.train_labels[split.train])
        assert np.all(np.abs(counts - round(f * 6000)) <= 1), counts
        assert torch.equal(split.labels, source.train_labels[split.train])
        picks[f] = set(split.train.tolist())
        again = split_train(source.train_labels, DataConfig(fraction=f, seed=3), 10)
        assert torch.equal(again.train, split.train)
        other = split_train(source.train_labels, DataConfig(fraction=f, seed=4), 10)
        assert not torch.equal(other.train, split.train)
    assert picks[0.1] < picks[0.25] < picks[0.5]


@pytest.mark.needs_fmnist
def test_val_split_is_disjoint_and_stratified(source):
    split = split_train(source.train_labels, DataConfig(val_fraction=0.1, fraction=0.5, seed=1), 10)
    val, train = set(split.val.tolist()), set(split.train.tolist())
    assert not val & train
    assert np.all(np.abs(per_class(source.train_labels[split.val]) - 600) <= 1)
    assert np.all(np.abs(per_class(source.train_labels[split.train]) - 2700) <= 1)  # half of the 5400 left
    full = split_train(source.train_labels, DataConfig(val_fraction=0.1, seed=1), 10)
    assert torch.equal(full.val, split.val)  # the hold-out does not depend on the fraction
    assert set(full.train.tolist()) | val == set(range(60000))


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_label_noise_exact_rate_other_class_seeded(source, rate):
    cfg = DataConfig(fraction=0.5, label_noise=rate, seed=2)
    split = split_train(source.train_labels, cfg, 10)
    assert torch.equal(split.clean_labels, source.train_labels[split.train])
    flipped = split.labels != split.clean_labels
    assert int(flipped.sum()) == round(rate * len(split.train))  # every chosen example really changed class
    shifts = np.bincount(((split.labels - split.clean_labels) % 10)[flipped].numpy(), minlength=10)
    expected = int(flipped.sum()) / 9
    assert shifts[0] == 0 and np.all(np.abs(shifts[1:] - expected) < 0.2 * expected)  # uniform over other classes
    assert torch.equal(split_train(source.train_labels, cfg, 10).labels, split.labels)
    other = split_train(source.train_labels, DataConfig(fraction=0.5, label_noise=rate, seed=5), 10)
    assert not torch.equal(other.labels, source.train_labels[other.train]) and not torch.equal(other.train, split.train)


@pytest.mark.needs_fmnist
def test_pairflip_noise_sends_each_flipped_class_to_the_next_one(source):
    """Asymmetric noise: the same examples as symmetric noise at this seed and rate, each moved to class c + 1."""
    cfg = DataConfig(fraction=0.5, label_noise=0.3, label_noise_kind="pairflip", seed=2)
    split = split_train(source.train_labels, cfg, 10)
    flipped = split.labels != split.clean_labels
    assert int(flipped.sum()) == round(0.3 * len(split.train))
    assert torch.equal(split.labels[flipped], (split.clean_labels[flipped] + 1) % 10)
    symmetric = split_train(source.train_labels, DataConfig(fraction=0.5, label_noise=0.3, seed=2), 10)
    assert torch.equal(flipped, symmetric.labels != symmetric.clean_labels)  # one draw of the examples
    with pytest.raises(ConfigError, match="label_noise_kind 'pairflip' must be < 0.5"):
        DataConfig(label_noise=0.5, label_noise_kind="pairflip").check()


@pytest.mark.needs_fmnist
def test_bundle_noise_caps_and_clean_test():
    bundle = build_datasets(DataConfig(label_noise=0.5, val_fraction=0.1, subset_train=1000, subset_test=300, seed=7))
    raw = load_source(DataConfig())
    assert (len(bundle.train), len(bundle.test), len(bundle.val)) == (1000, 300, 6000)
    assert int((bundle.train_labels != bundle.clean_train_labels).sum()) == 500  # exact on the capped set
    assert torch.equal(bundle.clean_train_labels, raw.train_labels[bundle.train.indices])
    assert torch.equal(bundle.train.labels, bundle.train_labels)
    assert torch.equal(bundle.test.labels, raw.test_labels[bundle.test.indices])  # test labels untouched
    assert torch.equal(bundle.val.labels, raw.train_labels[bundle.val.indices])  # val labels are clean
    assert not set(bundle.val.indices.tolist()) & set(bundle.train.indices.tolist())


# ---------------------------------------------------------------- preprocessing

@pytest.mark.needs_fmnist
def test_basic_transform_shapes_randomness_and_normalization():
    bundle = build_datasets(DataConfig(augment="basic", img_size=32, subset_train=64, subset_test=2000))
    assert bundle.img_size == 32
    x, _ = bundle.train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert any(not torch.equal(bundle.train[i][0], bundle.train[i][0]) for i in range(8))  # random crop / flip
    assert torch.equal(bundle.test[0][0], bundle.test[0][0])  # eval is deterministic
    test = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    assert test.shape == (2000, 1, 32, 32)
    assert abs(float(test.mean())) < 0.05 and abs(float(test.std()) - 1) < 0.05


def test_pad_crop_shifts_by_at_most_an_eighth(tmp_path):
    cfg = DataConfig(root=str(write_fmnist(tmp_path)), augment="basic", hflip=False)
    bundle = build_datasets(cfg)
    plain = build_datasets(DataConfig(root=cfg.root, augment="none")).train[0][0]
    torch.manual_seed(0)
    crops = [bundle.train[0][0] for _ in range(50)]
    assert any(not torch.equal(c, plain) for c in crops)
    for c in crops:  # each crop equals the plain image shifted by (dy, dx) with |d| <= 3 (pad 28 // 8)
        assert any(torch.equal(c[:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)],
                               plain[:, max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)])
                   for dy in range(-3, 4) for dx in range(-3, 4))


def test_rand_augment_spec_and_tensor_images():
    ra = rand_augment("rand-m9-mstd0.5-inc1")
    assert isinstance(ra, SpecRandAugment) and (ra.num_ops, ra.mean_magnitude, ra.magnitude_std) == (2, 9.0, 0.5)
    x = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(0)
    outs = [ra(x) for _ in range(20)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)
    torch.manual_seed(0)
    assert all(torch.equal(o, ra(x)) for o in outs)  # randomness comes from torch's RNG only
    assert rand_augment("rand-n3-m5").num_ops == 3
    for bad in ("rand-m9-inc0", "auto-m9", "rand-m11", "rand-x3", "rand-n1.5"):
        with pytest.raises(ConfigError, match="data.rand_augment"):
            rand_augment(bad)


def test_strong_mixup_soft_targets_and_picklable_transforms(tmp_path):
    cfg = DataConfig(root=str(write_fmnist(tmp_path)), augment="strong", mixup=0.8, cutmix=1.0, batch_size=8)
    bundle = build_datasets(cfg, label_smoothing=0.1)
    assert bundle.mixup is not None
    x = torch.stack([bundle.train[i][0] for i in range(8)])
    y = torch.arange(8)
    np.random.seed(123)
    np_state = np.random.get_state()[1].copy()
    torch.manual_seed(0)
    mixed, soft = bundle.mixup(x.clone(), y)
    assert np.array_equal(np.random.get_state()[1], np_state)  # NumPy's global RNG is left as it was
    assert soft.shape == (8, 10) and torch.allclose(soft.sum(1), torch.ones(8))
    assert float(soft.min()) >= 0.1 / 10 - 1e-6  # label smoothing reaches every class
    assert torch.all((soft > 0.02).sum(1) == 2) and not torch.equal(mixed, x)  # each row mixes two examples
    torch.manual_seed(0)
    again, soft_again = bundle.mixup(x.clone(), y)
    assert torch.equal(again, mixed) and torch.equal(soft_again, soft)
    transform = pickle.loads(pickle.dumps(bundle.train.transform))
    image = bundle.train.images[0]
    torch.manual_seed(1)
    expected = bundle.train.transform(image)
    torch.manual_seed(1)
    assert torch.equal(transform(image), expected)


def test_mixup_only_when_strong_and_even_batch(tmp_path):
    root = str(write_fmnist(tmp_path))
    assert build_datasets(DataConfig(root=root, augment="basic")).mixup is None
    assert build_datasets(DataConfig(root=root, augment="strong", mixup=0.0, cutmix=0.0)).mixup is None
    with pytest.raises(ConfigError, match="data.batch_size"):
        build_datasets(DataConfig(root=root, augment="strong", batch_size=7))


# ---------------------------------------------------------------- loaders

def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y in loader]


@pytest.mark.needs_fmnist
def test_train_order_is_a_function_of_seed_and_epoch():
    cfg = DataConfig(augment="none", subset_train=500, subset_test=100, batch_size=64)
    bundle = build_datasets(cfg)
    train, test = train_loader_for_epoch(bundle, cfg, seed=3, epoch=2), eval_loader(bundle.test, cfg)
    assert bundle.val is None and len(train) == 500 // 64 and not train.pin_memory
    first = batches(train)
    assert len(first) == 7 and all(len(y) == 64 for _, y in first)
    again = batches(train_loader_for_epoch(bundle, cfg, seed=3, epoch=2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    for seed, epoch in ((3, 3), (4, 2)):
        other = batches(train_loader_for_epoch(bundle, cfg, seed=seed, epoch=epoch))
        assert not torch.equal(torch.cat([y for _, y in other]), torch.cat([y for _, y in first]))
    assert torch.equal(torch.cat([y for _, y in batches(test)]), bundle.test.labels)  # eval order is fixed


def test_worker_augmentations_follow_seed_and_epoch(tmp_path):
    cfg = DataConfig(root=str(write_fmnist(tmp_path)), augment="basic", batch_size=8, num_workers=2)
    bundle = build_datasets(cfg)
    first, again = (batches(train_loader_for_epoch(bundle, cfg, 0, 1)) for _ in range(2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))


def test_too_few_examples_for_a_batch(tmp_path):
    cfg = DataConfig(root=str(write_fmnist(tmp_path)), batch_size=64)
    with pytest.raises(DataError, match="data.batch_size=64"):
        train_loader_for_epoch(build_datasets(cfg), cfg, 0, 0)


# ---------------------------------------------------------------- other sources

def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(DataError, match="data.download=true") as err:
        build_datasets(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert str(tmp_path) in str(err.value)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    bundle = build_datasets(DataConfig(dataset="folder", root=str(tmp_path), img_size=32, batch_size=2))
    assert (len(bundle.train), len(bundle.test), bundle.num_classes, bundle.in_chans) == (6, 6, 2, 3)
    assert bundle.train[0][0].shape == (3, 32, 32) and bundle.test[5][0].shape == (3, 32, 32)
    assert bundle.test[5][1] == 1
    (tmp_path / "val" / "dog" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0.png"):
        bundle.test[3]
    (tmp_path / "val").rename(tmp_path / "held_out")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "val"))):
        build_datasets(DataConfig(dataset="folder", root=str(tmp_path)))
