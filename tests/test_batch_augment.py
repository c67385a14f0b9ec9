"""Batched device-side augmentation against torchvision's per-image ops (the CPU pipeline it stands in for)."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torchvision.transforms import v2

from sharpvision.config import ConfigError
from sharpvision.data import batch_augment as ba
from sharpvision.data.batch_augment import OPS, BatchRandAugment, random_crop, random_hflip
from sharpvision.data.transforms import SpecRandAugment, rand_augment_params

SPACE = v2.RandAugment._AUGMENTATION_SPACE
MAGNITUDE_FREE = ("Identity", "AutoContrast", "Equalize")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images with the awkward cases mixed in: low contrast, constant, two-valued, full 0..255 ramps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    x[1::5] = x[1::5] // 8 + 100  # narrow range: AutoContrast / Equalize have work to do
    x[2::11] = 77  # constant: AutoContrast and Equalize keep it
    x[3::11] = torch.where(x[3::11] > 127, 200, 30).to(torch.uint8)  # two values
    if h * w >= 256:  # every threshold of Solarize / bit of Posterize meets every value
        flat = x[4::3].flatten(2)
        flat[..., :256] = torch.randperm(256, generator=g).to(torch.uint8)
        x[4::3] = flat.view_as(x[4::3])
    return x


def torchvision_op(img: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """What SpecRandAugment does to one image for one chosen op and signed magnitude (its own code path)."""
    ra = SpecRandAugment(num_ops=1, magnitude=0, magnitude_std=0)
    return ra._apply_image_or_video_transform(img, name, magnitude, interpolation=ra.interpolation, fill=ra._fill)


class OpSpy:
    """Records the op indices and signed magnitudes BatchRandAugment hands to ``_apply_ops``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = ba._apply_ops

        def spy(x: torch.Tensor, ops: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
            self.calls.append((ops.clone(), magnitude.clone()))
            return original(x, ops, magnitude)

        monkeypatch.setattr(ba, "_apply_ops", spy)


# ---------------------------------------------------------------- random_crop / random_hflip


@pytest.mark.parametrize("channels", [1, 3])
def test_random_crop_is_a_padded_window_at_uniform_offsets(channels):
    n, h, w, p = 1500, 5, 6, 2
    x = torch.randint(1, 256, (n, channels, h, w), dtype=torch.uint8)  # no zeros: padding is recognisable
    torch.manual_seed(0)
    out = random_crop(x, p)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
    match = torch.stack([(out == padded[..., dy:dy + h, dx:dx + w]).flatten(1).all(1) for dy, dx in offsets])
    assert match.any(0).all(), "some sample is not a window of its zero-padded image"
    counts = torch.bincount(match.int().argmax(0), minlength=len(offsets))  # random pixels: one window matches
    expected = n / len(offsets)  # 60 per offset, binomial sd ~7.6
    assert counts.min() > expected - 30 and counts.max() < expected + 30, counts
    assert torch.equal(random_crop(x, 0), x)
    with pytest.raises(ValueError):
        random_crop(x, -1)


def test_random_hflip_flips_a_fraction_p():
    x = torch.randint(0, 256, (4000, 3, 2, 5), dtype=torch.uint8)
    torch.manual_seed(0)
    out = random_hflip(x, p=0.3)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all()
    assert abs(flipped.float().mean().item() - 0.3) < 0.04  # sd ~0.007
    assert torch.equal(random_hflip(x, p=0.0), x)
    assert torch.equal(random_hflip(x, p=1.0), x.flip(-1))


# ---------------------------------------------------------------- each op against torchvision


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OPS)
def test_each_op_matches_torchvision_at_every_magnitude(name, channels):
    """All 101 bins, both signs where signed, on a non-square size: colour and geometric ops alike.

    Tolerance: at most 1 intensity level, and at least 99.9% of pixels identical (float rounding ties between
    a batched and a per-image kernel); observed bit-exact on CPU with torch 2.14 / torchvision 0.29.
    """
    h, w = 20, 24
    magnitudes_fn, signed = SPACE[name]
    values = magnitudes_fn(ba.NUM_BINS, h, w)
    magnitudes = [0.0] if values is None else [float(v) for v in values]
    if signed:
        magnitudes += [-m for m in magnitudes]
    magnitudes = (magnitudes * 12)[:max(len(magnitudes), 12)]  # magnitude-free ops still see a dozen images
    x = images(len(magnitudes), channels, h, w, seed=len(name))
    out = ba._apply_op(x, name, torch.tensor(magnitudes, dtype=torch.float64))
    expected = torch.stack([torchvision_op(img, name, m) for img, m in zip(x, magnitudes)])
    diff = (out.int() - expected.int()).abs()
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert diff.max() <= 1 and (diff == 0).float().mean() >= 0.999, (name, diff.max(), (diff > 0).sum())
    if name not in ("Identity",) and not (name == "Color" and channels == 1):
        assert not torch.equal(out, x)  # the comparison is not vacuous


@pytest.mark.parametrize("device", DEVICES)
def test_ops_are_identity_at_magnitude_zero_where_torchvision_is(device, monkeypatch):
    spy = OpSpy(monkeypatch)
    # >= 256 pixels, else Equalize is an identity too (PIL's rule); no 255, which Solarize inverts even at m0
    x = images(700, 3, 16, 17).clamp(max=254).to(device)
    torch.manual_seed(0)
    out = BatchRandAugment(num_ops=1, magnitude=0, magnitude_std=0)(x)
    (ops, magnitude), = spy.calls
    for i, name in enumerate(OPS):
        chosen = ops == i
        assert chosen.any()
        if name in ("AutoContrast", "Equalize"):
            assert not torch.equal(out[chosen], x[chosen])
            continue
        assert torch.equal(out[chosen], x[chosen]), name
        one = x[chosen][:1].cpu()  # torchvision agrees that these are identities
        assert torch.equal(torchvision_op(one[0], name, float(magnitude[chosen][0])), one[0]), name


# ---------------------------------------------------------------- the whole RandAugment


def test_op_choice_is_uniform_and_signs_fair(monkeypatch):
    spy = OpSpy(monkeypatch)
    torch.manual_seed(0)
    BatchRandAugment(num_ops=2, magnitude=9, magnitude_std=0.5)(torch.zeros(7000, 1, 4, 4, dtype=torch.uint8))
    assert len(spy.calls) == 2
    ops = torch.cat([o for o, _ in spy.calls])
    magnitude = torch.cat([m for _, m in spy.calls])
    counts = torch.bincount(ops, minlength=len(OPS))
    assert len(counts) == len(OPS) and (counts - 1000).abs().max() < 150, counts  # sd ~31
    for i, name in enumerate(OPS):
        negative = (magnitude[ops == i] < 0).float().mean().item()
        if SPACE[name][1]:
            assert abs(negative - 0.5) < 0.08, name
        else:
            assert negative == 0, name


def test_magnitude_noise_is_drawn_per_image_like_spec_rand_augment(monkeypatch):
    """Bins are round(clamp(N(m, mstd), 0, 10) * 10): one level per image, shared by its layers."""
    spy = OpSpy(monkeypatch)
    torch.manual_seed(0)
    BatchRandAugment(num_ops=2, magnitude=9.5, magnitude_std=1.0)(torch.zeros(14000, 1, 4, 4, dtype=torch.uint8))
    (ops1, mag1), (ops2, mag2) = spy.calls
    rotate = SPACE["Rotate"][0](ba.NUM_BINS, 4, 4)
    both = (ops1 == OPS.index("Rotate")) & (ops2 == OPS.index("Rotate"))
    assert both.sum() > 20 and torch.equal(mag1[both].abs(), mag2[both].abs())  # same level in both layers
    level = mag1[ops1 == OPS.index("Rotate")].abs() / 3.0  # Rotate spans 0..30 degrees over levels 0..10
    # ~1000 draws of round(clamp(N(9.5, 1), 0, 10) * 10) / 10: mean 9.30 (sd of the mean 0.025), P(10) 0.326
    assert abs(level.mean().item() - 9.30) < 0.1
    assert (level == 10).float().mean().item() == pytest.approx(0.326, abs=0.06)
    assert set(level.tolist()) <= {float(v) / 3.0 for v in rotate}
    spy.calls.clear()
    BatchRandAugment(num_ops=1, magnitude=9, magnitude_std=0)(torch.zeros(500, 1, 4, 4, dtype=torch.uint8))
    (ops, mag), = spy.calls
    assert torch.all(mag[ops == OPS.index("Rotate")].abs() == float(rotate[90]))


@pytest.mark.parametrize("channels", [1, 3])
def test_whole_augmentation_replays_torchvision_per_image(channels):
    """Replaying the batch's draws (its documented order) through SpecRandAugment's own per-image op code."""
    n, h, w = 96, 9, 11
    x = images(n, channels, h, w, seed=3)
    aug = BatchRandAugment.from_spec("rand-m9-mstd0.5-inc1")
    torch.manual_seed(1)
    out = aug(x)
    torch.manual_seed(1)
    noise = torch.randn(n)
    layers = [(torch.randint(len(OPS), (n,)), torch.rand(n)) for _ in range(aug.num_ops)]
    same = 0
    for k in range(n):
        level = float(noise[k]) * 0.5 + 9.0
        index = round(min(max(level, 0.0), 10.0) * 10)  # SpecRandAugment.forward
        img = x[k]
        for ops, u in layers:  # v2.RandAugment.forward
            name = OPS[int(ops[k])]
            magnitudes_fn, signed = SPACE[name]
            values = magnitudes_fn(ba.NUM_BINS, h, w)
            magnitude = 0.0 if values is None else float(values[index])
            if signed and u[k] <= 0.5:
                magnitude *= -1
            img = torchvision_op(img, name, magnitude)
        same += torch.equal(out[k], img)
    assert same >= 0.95 * n, f"{n - same} of {n} images differ from the per-image path"
    assert not torch.equal(out, x)


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_under_seed_and_preserves_batch(device):
    x = images(32, 3, 8, 8).to(device)
    aug = BatchRandAugment(num_ops=2, magnitude=9, magnitude_std=0.5)

    def pipeline(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return aug(random_hflip(random_crop(x, 1)))

    first = pipeline(0)
    assert first.shape == x.shape and first.dtype == torch.uint8 and first.device == x.device
    assert torch.equal(first, pipeline(0))
    assert not torch.equal(first, pipeline(1))
    assert torch.equal(aug(x[:0]), x[:0]) and torch.equal(BatchRandAugment(0, 9, 0.5)(x), x)
    for bad in (x.float(), x[:, :2], x[0]):
        with pytest.raises(ValueError):
            aug(bad)


def test_from_spec_parses_like_the_per_image_path():
    assert rand_augment_params("rand-m9-mstd0.5-inc1") == (2, 9.0, 0.5)
    aug = BatchRandAugment.from_spec("rand-n3-m5")
    assert (aug.num_ops, aug.magnitude, aug.magnitude_std) == (3, 5.0, 0.0)
    for bad in ("rand-m9-inc0", "auto-m9", "rand-m11", "rand-x3", "rand-n1.5"):
        with pytest.raises(ConfigError, match="data.rand_augment"):
            BatchRandAugment.from_spec(bad)
    with pytest.raises(ValueError):
        BatchRandAugment(num_ops=-1, magnitude=9, magnitude_std=0)


# ---------------------------------------------------------------- no per-sample loop


class CountTorchCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_work_is_batched_not_looped_over_samples():
    aug = BatchRandAugment(num_ops=2, magnitude=9, magnitude_std=0.5)

    def calls(n: int) -> int:
        x = images(n, 3, 8, 8)
        with CountTorchCalls() as counter:
            aug(random_hflip(random_crop(x, 1)))
        return counter.count

    assert calls(4) == calls(64) > 0  # the number of torch calls does not grow with the batch
