"""MNIST-C: each op against skimage (Canny, the affine warps) or the reference's formula written out in numpy (the
lines), on real Fashion-MNIST test images; the suite's evaluation and its bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from helpers import FMNIST, TEST_IMAGES
from skimage import feature, transform
from torch import nn

from sharpvision.evaluate import mnist_c as mc
from sharpvision.evaluate.corruptions import CorruptionError, stream_seed

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.needs_fmnist]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The first 64 Fashion-MNIST test images in [0, 1], float64 (N, 28, 28)."""
    raw = gzip.open(FMNIST / TEST_IMAGES).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:64] / 255.0


def batch(images: np.ndarray) -> torch.Tensor:
    return torch.tensor(images)[:, None]


def test_canny_edges_equal_skimage(images: np.ndarray) -> None:
    ours = mc.corrupt(batch(images), "canny_edges")[:, 0].numpy()
    assert set(np.unique(ours)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ours.astype(bool), np.stack([feature.canny(im) for im in images]))


def _skimage_about_centre(matrix: np.ndarray) -> transform.AffineTransform:
    """MNIST-C's recipe: the linear part, with the translation that keeps (13.5, 13.5) fixed."""
    m = np.eye(3)
    m[:2, :2] = matrix
    m[:2, 2] = 13.5 * (1 - matrix.sum(1))
    return transform.AffineTransform(matrix=m)


@pytest.mark.parametrize("name", ["shear", "rotate", "scale", "translate"])
def test_affine_corruptions_equal_skimage_warp(images: np.ndarray, name: str) -> None:
    """Each image's random direction is read from a copy of the generator; skimage's warp (bilinear, zero fill) of
    MNIST-C's transform must give the same image. Shear is MNIST-C's (the skimage of its time: sin and cos of the
    angle), which later skimage versions changed to a tan."""
    g = torch.Generator().manual_seed(5)
    signs = mc._signs(len(images), torch.Generator().manual_seed(5), torch.device("cpu"),
                      2 if name == "translate" else 1).numpy()
    ours = mc.OPS[name](batch(images), mc.PARAMS[name], g)[:, 0].numpy()
    c = mc.PARAMS[name]
    for image, sign, got in zip(images, signs, ours):
        if name == "translate":
            tf = transform.AffineTransform(translation=c * sign)
        else:
            a = c * sign[0]
            linear = {"shear": [[1, -np.sin(a)], [0, np.cos(a)]],
                      "rotate": [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]],
                      "scale": [[c, 0], [0, c]]}[name]
            tf = _skimage_about_centre(np.array(linear))
        np.testing.assert_allclose(got, np.clip(transform.warp(image, inverse_map=tf), 0, 1), atol=1e-6)
    assert {1.0, -1.0} <= set(np.unique(signs)) or name == "scale"  # both directions drawn


def _reference_line(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """MNIST-C's line_from_points, written out."""
    if c1 == c0:
        return np.zeros((28, 28))
    cc, rr = np.meshgrid(np.linspace(0, 27, 28), np.linspace(0, 27, 28), sparse=True)
    dist = np.clip(np.abs(rr - ((r1 - r0) / (c1 - c0) * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    line = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    line[:, :int(np.floor(c0))] = 0
    line[:, int(np.ceil(c1)):] = 0
    return line


def test_lines_follow_the_reference_formula() -> None:
    ends = [(0.0, 3.0, 27.0, 20.0), (2.0, 10.0, 6.3, 12.7), (4.4, 5.0, 4.4, 9.0), (1.5, 26.0, 25.2, 0.0)]
    got = mc.line_from_points(*(torch.tensor(v, dtype=torch.float64) for v in zip(*ends))).numpy()
    for (c0, r0, c1, r1), line in zip(ends, got):
        np.testing.assert_allclose(line, _reference_line(c0, r0, c1, r1), atol=1e-12)


def _reference_zigzag_points(r0: float, r1: float) -> np.ndarray:
    """MNIST-C's zigzag vertices, written out (its loop, including the odd last point)."""
    a = b = 2.0
    c0, c1 = 2, 25
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)
    points = [(0, 0)]
    for i in range(int((d - a) // (2 * a)) + 1):
        points.append(((2 * i + 1) * a, (-1) ** i * b))
    max_c = (2 * a) * (d // (2 * a))
    if d != max_c:
        points.append((d, points[-1][1] / (2 * (d - max_c))))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cs, rs = rot @ np.array(points).T
    return np.stack([cs + c0, rs + r0])


def test_zigzag_vertices_follow_the_reference() -> None:
    r0 = torch.tensor([0.0, 13.0, 26.0, 7.0], dtype=torch.float64)
    r1 = r0 + torch.tensor([-5.0, 4.0, 0.0, -1.0], dtype=torch.float64)
    cs, rs = mc._zigzag_points(r0, r1)
    for i in range(len(r0)):
        np.testing.assert_allclose(torch.stack([cs[i], rs[i]]).numpy(), _reference_zigzag_points(r0[i].item(),
                                                                                              r1[i].item()), atol=1e-12)


def test_the_simple_ops_and_the_drawn_ones(images: np.ndarray) -> None:
    x = batch(images).float()
    np.testing.assert_allclose(mc.corrupt(x, "brightness").numpy(), np.clip(x.numpy() + 0.5, 0, 1))
    striped = mc.corrupt(x, "stripe")
    assert torch.equal(striped[..., 7:21], x[..., 7:21]) and torch.allclose(striped[..., :7], 1 - x[..., :7])
    g = torch.Generator().manual_seed(1)
    dotted = mc.corrupt(x, "dotted_line", g) - x
    off = (torch.arange(28) // 2) % 2 == 0
    assert (dotted[..., off] == 0).all() and (dotted >= 0).all() and (dotted.flatten(1).amax(1) > 0).all()
    for name in mc.MNIST_C:
        out = mc.corrupt(x, name, torch.Generator().manual_seed(2))
        assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1, name
        again = mc.corrupt(x, name, torch.Generator().manual_seed(2))
        assert torch.equal(out, again), f"{name}: the same seed must give the same images"
    spatter = mc.corrupt(x, "spatter", torch.Generator().manual_seed(3))
    changed = (spatter - x).abs() > 1e-6
    assert 0 < changed.float().mean() < 0.5  # blots, not a wash


def test_accuracy_over_the_suite_and_bad_input(images: np.ndarray) -> None:
    """A model that reads one pixel: its accuracy per corruption must equal a direct count on the corrupted
    images made from the same seeds."""
    x = batch(images).float()
    y = (x[:, 0, 14, 14] > 0.3).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([-0.2, 0.0]))  # class 1 when (pixel - 0.5) > -0.2: the pixel > 0.3
        model[1].weight[1, 14 * 28 + 14] = 0.25  # the input is (pixel - 0.5) / 0.25
    mean, std = [0.5], [0.25]
    batches = [((x[:32] - 0.5) / 0.25, y[:32]), ((x[32:] - 0.5) / 0.25, y[32:])]
    result = mc.mnist_c_accuracy(model, batches, mean, std, names=["rotate", "fog"], seed=4)
    assert result["n"] == 64 and result["clean_accuracy"] == 1.0 and list(result["accuracy"]) == ["rotate", "fog"]
    for name in ("rotate", "fog"):
        g = torch.Generator().manual_seed(stream_seed(4, f"mnist_c/{name}", 1))
        hits = sum(((mc.corrupt(b * 0.25 + 0.5, name, g)[:, 0, 14, 14] > 0.3).long() == t).sum().item()
                   for b, t in batches)
        assert result["accuracy"][name] == pytest.approx(hits / 64)
    assert result["mean_corruption_accuracy"] == pytest.approx(sum(result["accuracy"].values()) / 2)
    with pytest.raises(CorruptionError, match="unknown MNIST-C corruption 'snow'"):
        mc.resolve("rotate,snow")
    with pytest.raises(CorruptionError, match="grey 28 x 28"):
        mc.corrupt(torch.rand(2, 3, 32, 32), "rotate")


def test_a_runs_image_size_is_checked_before_any_work() -> None:
    """``sharpvision eval`` asks this of a run's images before its first stage: 28 px grey passes, anything else
    is one line naming the size."""
    mc.check_size(1, 28)
    for channels, side, shown in ((1, 32, "32 x 32 with 1 channel"), (3, 28, "28 x 28 with 3 channel")):
        with pytest.raises(CorruptionError, match="grey 28 x 28") as info:
            mc.check_size(channels, side)
        assert shown in str(info.value) and "\n" not in str(info.value)
