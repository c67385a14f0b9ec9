"""MNIST-C (Mu & Gilmer 2019): the 15 corruptions of the MNIST-C benchmark for 28 px grey images, as batched torch
ops on (N, 1, 28, 28) float images in [0, 1].

MNIST-C fixes one severity per corruption (the defaults of its ``corruptions.py``); those parameters are below, in
``PARAMS``. Shared with the -C suite (``corruption_ops``), at MNIST-C's parameters: shot and impulse noise, glass
and motion blur. Written here: the affine ones (shear, scale, rotate, translate: skimage's ``AffineTransform`` about
the centre (13.5, 13.5) and its bilinear ``warp`` with zero fill, which ``grid_sample`` with aligned corners
reproduces), brightness (HSV value + 0.5 on a grey pixel is the pixel + 0.5), stripe, fog (a crop of a 256 px
plasma fractal, as MNIST-C), spatter (mud only), the line drawings (dotted line, zigzag) and Canny edges
(skimage's ``feature.canny`` at its defaults: Gaussian sigma 1 with zero padding and bleed-over correction, Sobel,
bilinear non-maximum suppression, hysteresis at 0.1 / 0.2 with 8-connected components).

Random parameters (directions, line end points) are drawn per image from the generator, so one seed gives the same
corrupted set on every run; they are not drawn in numpy's order (MNIST-C's own files came from numpy's global
stream), so the images are MNIST-C's corruptions, not its files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from statistics import fmean

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sharpvision.evaluate import corruption_ops as ops
from sharpvision.evaluate.corruptions import CorruptionError, stream_seed
from sharpvision.evaluate.progress import bar as progress_bar

MNIST_C: tuple[str, ...] = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
                            "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
                            "canny_edges")
SIDE = 28
CENTRE = 13.5  # MNIST-C's fixed point of the affine corruptions: (27 / 2, 27 / 2)


def _signs(n: int, g: torch.Generator | None, device: torch.device, k: int = 1) -> Tensor:
    """``numpy.random.choice([-1, 1])`` per image (``k`` per image), as float64 on ``device``."""
    return (ops._uniform((n, k), 0.0, 1.0, g, device) < 0.5).to(ops.F64) * 2 - 1


def _warp(x: Tensor, a: Tensor) -> Tensor:
    """skimage's ``warp(x, inverse_map=AffineTransform(a))`` (bilinear, zero outside): output pixel (col, row) takes
    the input at ``a @ (col, row, 1)``. ``a`` is (N, 3, 3) in pixel coordinates, float64."""
    n = x.shape[0]
    scale = torch.diag(torch.tensor([2 / (SIDE - 1), 2 / (SIDE - 1), 1], dtype=ops.F64, device=a.device))
    shift = torch.eye(3, dtype=ops.F64, device=a.device)
    shift[:2, 2] = -1
    to_norm = shift @ scale  # pixel -> [-1, 1] with aligned corners
    theta = to_norm @ a @ torch.linalg.inv(to_norm)
    grid = F.affine_grid(theta[:, :2].to(x.dtype), (n, 1, SIDE, SIDE), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True).clamp(0, 1)


def _about_centre(m: Tensor) -> Tensor:
    """The linear part ``m`` (N, 2, 2) as an affine map that keeps MNIST-C's centre fixed."""
    a = torch.zeros(m.shape[0], 3, 3, dtype=ops.F64, device=m.device)
    a[:, :2, :2] = m
    a[:, :2, 2] = CENTRE * (1 - m.sum(2))  # a3 = 13.5 (1 - a1 - a2), b3 = 13.5 (1 - b1 - b2)
    a[:, 2, 2] = 1
    return a


def _linear(rotation: Tensor, shear: Tensor, scale: float) -> Tensor:
    """skimage's ``AffineTransform(scale, rotation, shear)`` linear part, (N, 2, 2)."""
    return torch.stack([torch.stack([scale * torch.cos(rotation), -scale * torch.sin(rotation + shear)], 1),
                        torch.stack([scale * torch.sin(rotation), scale * torch.cos(rotation + shear)], 1)], 1)


def shear(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    angle = c * _signs(x.shape[0], g, x.device)[:, 0]
    return _warp(x, _about_centre(_linear(torch.zeros_like(angle), angle, 1.0)))


def rotate(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    angle = c * _signs(x.shape[0], g, x.device)[:, 0]
    return _warp(x, _about_centre(_linear(angle, torch.zeros_like(angle), 1.0)))


def scale(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    zero = torch.zeros(x.shape[0], dtype=ops.F64, device=x.device)
    return _warp(x, _about_centre(_linear(zero, zero, c)))


def translate(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    a = torch.eye(3, dtype=ops.F64, device=x.device).repeat(x.shape[0], 1, 1)
    a[:, :2, 2] = c * _signs(x.shape[0], g, x.device, 2)
    return _warp(x, a)


def brightness(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    return (x + c).clamp(0, 1)


def stripe(x: Tensor, c: None, g: torch.Generator | None) -> Tensor:
    out = x.clone()
    out[..., :7] = 1 - x[..., :7]
    out[..., 21:] = 1 - x[..., 21:]
    return out


def fog(x: Tensor, p: tuple[float, float], g: torch.Generator | None) -> Tensor:
    """MNIST-C's fog: a 28 px crop of a 256 px plasma fractal, added and rescaled by the image's maximum."""
    strength, decay = p
    plasma = ops.plasma_fractal(x.shape[0], 256, decay, g, x.device)[:, None, :SIDE, :SIDE].to(x.dtype)
    peak = x.amax((1, 2, 3), keepdim=True)
    return ((x + strength * plasma) * peak / (peak + strength)).clamp(0, 1)


def spatter(x: Tensor, p: tuple[float, float, float, float, float], g: torch.Generator | None) -> Tensor:
    """Mud: Gaussian noise blurred and thresholded into blots, their mask blurred and cut at 0.8, blots of grey
    63/255 pasted over the image (skimage's ``gaussian``: 'nearest' borders, truncate 4)."""
    loc, spread, sigma, threshold, mask_sigma = p
    liquid = ops._gaussian_filter(ops._normal(x.shape, loc, spread, g, x.device), (sigma, sigma), 4.0, "nearest")
    m = ops._gaussian_filter((liquid > threshold).to(ops.F64), (mask_sigma, mask_sigma), 4.0, "nearest")
    m = torch.where(m < 0.8, 0.0, m).to(x.dtype)
    return (x * (1 - m) + 63 / 255 * m).clamp(0, 1)


def line_from_points(c0: Tensor, r0: Tensor, c1: Tensor, r1: Tensor) -> Tensor:
    """MNIST-C's anti-aliased line through (c0, r0) and (c1, r1) (one per image, float64), (N, 28, 28) in [0, 1]:
    log(1 - d / 2.3) + 1 of the vertical distance d to the line, zero left of floor(c0) and right of ceil(c1), and
    all zero when c0 = c1."""
    grid = torch.arange(SIDE, dtype=ops.F64, device=c0.device)
    cc, rr = grid[None, None, :], grid[None, :, None]
    c0, r0, c1, r1 = (t[:, None, None] for t in (c0, r0, c1, r1))
    vertical = c1 == c0
    slope = (r1 - r0) / torch.where(vertical, 1.0, c1 - c0)
    dist = (rr - (slope * (cc - c0) + r0)).abs().clamp(0, 2.3 - 1e-10)
    line = (torch.log(1 - dist / 2.3) + 1).clamp(0, 1)
    inside = (cc >= torch.floor(c0)) & (cc < torch.ceil(c1)) & ~vertical
    return line * inside


def dotted_line(x: Tensor, c: None, g: torch.Generator | None) -> Tensor:
    """A line from column 0 to 27 between two random rows, every other pair of columns left out."""
    n = x.shape[0]
    rows = torch.floor(ops._uniform((n, 2), 0.0, 27.0, g, x.device))  # randint(0, 27) twice
    zero = torch.zeros(n, dtype=ops.F64, device=x.device)
    line = line_from_points(zero, rows[:, 0], zero + 27, rows[:, 1])
    dashes = (torch.arange(SIDE, device=x.device) // 2) % 2 == 1  # columns 0-1 off, 2-3 on, ...
    return (x + (line * dashes).to(x.dtype)[:, None]).clamp(0, 1)


def _zigzag_points(r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
    """MNIST-C's zigzag vertices (columns, rows), (N, K): teeth 2 px long and 2 px high along the segment from
    (2, r0) to (25, r1), including the reference's last point (d, r / (2 (d - max_c)))."""
    a = b = 2.0
    c0, c1 = 2.0, 25.0
    theta = torch.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / torch.cos(theta)
    teeth = int(((d - a) // (2 * a)).max().item()) + 1  # the same for every image: d is 23.0-23.6
    cols = [torch.zeros_like(d)] + [torch.full_like(d, (2 * i + 1) * a) for i in range(teeth)]
    rows = [torch.zeros_like(d)] + [torch.full_like(d, (-1) ** i * b) for i in range(teeth)]
    max_c = (2 * a) * torch.div(d, 2 * a, rounding_mode="floor")
    cols.append(d)
    rows.append(rows[-1] / (2 * (d - max_c)))  # d != max_c here (d is not a multiple of 4)
    cs, rs = torch.stack(cols, 1), torch.stack(rows, 1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return cos * cs - sin * rs + c0, sin * cs + cos * rs + r0[:, None]


def zigzag(x: Tensor, c: None, g: torch.Generator | None) -> Tensor:
    n = x.shape[0]
    r0 = torch.floor(ops._uniform((n,), 0.0, 27.0, g, x.device))  # randint(0, 27)
    r1 = r0 + torch.floor(ops._uniform((n,), -5.0, 5.0, g, x.device))  # + randint(-5, 5)
    cs, rs = _zigzag_points(r0, r1)
    out = x[:, 0].to(ops.F64)
    for i in range(1, cs.shape[1]):
        out = (out + line_from_points(cs[:, i - 1], rs[:, i - 1], cs[:, i], rs[:, i])).clamp(0, 1)
    return out[:, None].to(x.dtype)


def _constant_gaussian(x: Tensor, sigma: float) -> Tensor:
    """scipy's gaussian_filter with zero padding ('constant', truncate 4) over the last two dims, float64."""
    radius = int(4.0 * sigma + 0.5)
    k = ops._gauss1d(sigma, radius).to(x.device)
    i = torch.arange(SIDE, device=x.device)
    offset = i[None, :] - i[:, None] + radius  # m[i, j] = k[j - i + r] inside the image, 0 past its edges
    m = torch.where((offset >= 0) & (offset <= 2 * radius), k[offset.clamp(0, 2 * radius)], 0.0)
    return m @ x @ m.T


def _sobel(x: Tensor, axis: int) -> Tensor:
    """scipy.ndimage.sobel along ``axis`` (0 rows, 1 columns) with 'reflect' borders (the edge pixel repeated)."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    if axis == 0:
        diff = p[:, 2:, :] - p[:, :-2, :]
        return diff[:, :, :-2] + 2 * diff[:, :, 1:-1] + diff[:, :, 2:]
    diff = p[:, :, 2:] - p[:, :, :-2]
    return diff[:, :-2, :] + 2 * diff[:, 1:-1, :] + diff[:, 2:, :]


def _suppress(isobel: Tensor, jsobel: Tensor, mag: Tensor, low: float) -> Tensor:
    """skimage's bilinear non-maximum suppression: the magnitude where it is at least ``low``, inside the 1 px
    border, and not below either neighbour interpolated along the gradient; 0 elsewhere."""
    p = F.pad(mag, (1, 1, 1, 1))

    def at(dr: int, dc: int) -> Tensor:  # magnitude[row + dr, col + dc]
        return p[:, 1 + dr:1 + dr + SIDE, 1 + dc:1 + dc + SIDE]

    ai, aj = isobel.abs(), jsobel.abs()
    up, down, left, right = isobel >= 0, isobel <= 0, jsobel <= 0, jsobel >= 0
    cond1 = (up & right) | (down & left)
    cond2 = (down & right) | (up & left)
    steep = ai > aj
    flat = ai < aj
    w1 = torch.where(steep, aj / ai.clamp(min=1e-300), ai / aj.clamp(min=1e-300))
    w2 = torch.where(flat, ai / aj.clamp(min=1e-300), aj / ai.clamp(min=1e-300))
    n11 = torch.where(steep, at(1, 0), at(0, 1))
    n12 = at(1, 1)
    n21 = torch.where(steep, at(-1, 0), at(0, -1))
    n22 = at(-1, -1)
    m11 = torch.where(flat, at(0, 1), at(-1, 0))
    m12 = at(-1, 1)
    m21 = torch.where(flat, at(0, -1), at(1, 0))
    m22 = at(1, -1)
    keep1 = (n12 * w1 + n11 * (1 - w1) <= mag) & (n22 * w1 + n21 * (1 - w1) <= mag)
    keep2 = (m12 * w2 + m11 * (1 - w2) <= mag) & (m22 * w2 + m21 * (1 - w2) <= mag)
    keep = torch.where(cond1, keep1, cond2 & keep2)
    border = torch.zeros(SIDE, SIDE, dtype=torch.bool, device=mag.device)
    border[1:-1, 1:-1] = True
    return torch.where(keep & border & (mag >= low), mag, torch.zeros_like(mag))


def canny_edges(x: Tensor, p: tuple[float, float, float], g: torch.Generator | None) -> Tensor:
    """skimage's ``feature.canny`` (sigma, low and high thresholds) as 0/1 images."""
    sigma, low, high = p
    img = x[:, 0].to(ops.F64)
    ones = torch.ones_like(img[:1])
    smoothed = _constant_gaussian(img, sigma) / (_constant_gaussian(ones, sigma) + torch.finfo(ops.F64).eps)
    isobel, jsobel = _sobel(smoothed, 0), _sobel(smoothed, 1)
    mag = torch.sqrt(isobel * isobel + jsobel * jsobel)
    kept = _suppress(isobel, jsobel, mag, low)
    weak = kept > 0
    edges = weak & (kept >= high)
    while True:  # hysteresis: grow the strong pixels through 8-connected weak ones until nothing changes
        grown = F.max_pool2d(edges[:, None].to(x.dtype), 3, stride=1, padding=1)[:, 0].bool() & weak
        if torch.equal(grown, edges):
            return edges[:, None].to(x.dtype)
        edges = grown


Op = Callable[[Tensor, object, "torch.Generator | None"], Tensor]
OPS: dict[str, Op] = {"shot_noise": ops.shot_noise, "impulse_noise": ops.impulse_noise, "glass_blur": ops.glass_blur,
                      "motion_blur": ops.motion_blur, "shear": shear, "scale": scale, "rotate": rotate,
                      "brightness": brightness, "translate": translate, "stripe": stripe, "fog": fog,
                      "spatter": spatter, "dotted_line": dotted_line, "zigzag": zigzag, "canny_edges": canny_edges}
# MNIST-C's corruptions.py at the severity each is called with (its defaults): shot_noise 5, impulse_noise 4,
# glass_blur 1, motion_blur 1, shear 2, scale 3, rotate 2, brightness 5, translate 3, fog 5, spatter 4
PARAMS: dict[str, object] = {"shot_noise": 3, "impulse_noise": 0.17, "glass_blur": (0.7, 1, 2),
                             "motion_blur": (10, 3.0), "shear": 0.4, "scale": 1 / 0.7, "rotate": 0.4,
                             "brightness": 0.5, "translate": 3, "stripe": None, "fog": (3.0, 1.4),
                             "spatter": (0.65, 0.3, 1.0, 0.65, 1.5), "dotted_line": None, "zigzag": None,
                             "canny_edges": (1.0, 0.1, 0.2)}


def resolve(spec: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """MNIST-C corruption names from ``spec`` (None or 'all', else names, comma-separated or a list), in the
    suite's order; an unknown name is a CorruptionError naming it."""
    if spec is None or spec == "all":
        return MNIST_C
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    for part in parts:
        if part not in OPS:
            raise CorruptionError(f"unknown MNIST-C corruption {part!r}: choose from {', '.join(MNIST_C)}")
    if not parts:
        raise CorruptionError("no MNIST-C corruption names given")
    return tuple(name for name in MNIST_C if name in parts)


def check_size(channels: int, side: int) -> None:
    """MNIST-C is made for grey 28 x 28 images; anything else is a CorruptionError naming the size, raised before
    any work (``sharpvision eval`` checks a run's images with this before its first stage)."""
    if (channels, side) != (1, SIDE):
        raise CorruptionError(f"MNIST-C is defined for grey 28 x 28 images; this run's are {side} x {side} with "
                              f"{channels} channel(s) (use --corruptions, which has a table for every size)")


def corrupt(images: Tensor, name: str, generator: torch.Generator | None = None) -> Tensor:
    """``images`` (N, 1, 28, 28) in [0, 1] with MNIST-C's corruption ``name``, same shape and dtype."""
    (name,) = resolve([name])
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, SIDE, SIDE) or not images.is_floating_point():
        raise CorruptionError(f"MNIST-C is defined for grey 28 x 28 images (N, 1, 28, 28) in [0, 1], got "
                              f"{images.dtype} {tuple(images.shape)}")
    return OPS[name](images.float(), PARAMS[name], generator).to(images.dtype)


@torch.no_grad()
def mnist_c_accuracy(model: nn.Module, batches: Iterable, mean: Sequence[float], std: Sequence[float],
                     names: Sequence[str] = MNIST_C, device: torch.device | str = "cpu", seed: int = 0,
                     autocast: Callable[[], AbstractContextManager] = nullcontext, progress: bool = False) -> dict:
    """Top-1 accuracy on each MNIST-C corruption, in one pass over ``batches`` (normalised images and labels, as
    the data pipeline yields them); one generator per corruption seeded from ``seed`` and the name. A progress
    bar on a terminal with ``progress``."""
    names = resolve(names)
    device = torch.device(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    gens = {nm: torch.Generator(device=device).manual_seed(stream_seed(seed, f"mnist_c/{nm}", 1)) for nm in names}
    correct = torch.zeros(len(names), dtype=torch.int64, device=device)
    clean = torch.zeros((), dtype=torch.int64, device=device)
    n, was_training = 0, model.training
    model.eval()
    passes = progress_bar(batches, len(names), "MNIST-C", progress)
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            images = (x * s + m).clamp(0, 1)
            clean += (_predict(model, x, autocast) == y).sum()
            for i, nm in enumerate(names):
                corrupted = corrupt(images, nm, gens[nm])
                correct[i] += (_predict(model, (corrupted - m) / s, autocast) == y).sum()
                passes.update()
            n += len(y)
    finally:
        passes.close()
        model.train(was_training)
    if n == 0:
        raise CorruptionError("mnist_c_accuracy: the batches held no examples")
    accuracy = dict(zip(names, (correct.double() / n).tolist()))
    return {"suite": "mnist-c", "seed": seed, "n": n, "clean_accuracy": clean.item() / n, "accuracy": accuracy,
            "mean_corruption_accuracy": fmean(accuracy.values())}


def _predict(model: nn.Module, x: Tensor, autocast: Callable[[], AbstractContextManager]) -> Tensor:
    with autocast():
        return model(x).argmax(1)
