"""The 15 corruptions as batched torch ops on (N, C, H, W) float images in [0, 1], C = 1 or 3.

Each op is ``op(x, p, g)`` with ``p`` one severity's parameters from ``corruption_tables`` and ``g`` the generator
for its random draws. Draws are made on the generator's device and moved to the images (a CPU generator gives the
same corruption on CPU and GPU) and in the order and shapes the reference draws them, so that feeding the
reference ``numpy.random`` from the same torch stream reproduces its output (the tests do this). Resampling
follows the reference's libraries: scipy's zoom and map_coordinates, skimage's (scipy's) Gaussian filter, OpenCV's
disk blur and affine warp, PIL's BOX resize; JPEG goes through libjpeg via ``torchvision.io`` on the CPU,
the one step that is not a tensor op, because only libjpeg reproduces libjpeg's bytes.

Grey images (C = 1): the per-channel ops act on the one channel; brightness shifts the value (as HSV does for a
grey pixel), snow uses the image as its own luminance, fog adds the same map, JPEG encodes one grey component,
and frost blends the luminance of its texture (0.2989 R + 0.587 G + 0.114 B, as the reference).

Frost: the reference blends crops of six photographs shipped with it. They are not ours to ship, so frost here
blends a procedural texture (seeded like every other draw): needles in random orientations, laid out in patches,
over a smooth shading field, coloured with the per-channel mean and standard deviation of one of the six photos
(measured once, below). It has their brightness and contrast, not their exact look, so frost accuracies are
comparable between models evaluated here but not with published -C frost numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

F64 = torch.float64
Op = Callable[[Tensor, Any, "torch.Generator | None"], Tensor]

# per-channel mean and std of the reference's frost photos frost1..6 (RGB, whole image; 2 and 3 are the same photo)
FROST_MEAN = ((0.305, 0.585, 0.650), (0.787, 0.805, 0.841), (0.787, 0.805, 0.841), (0.540, 0.599, 0.648),
              (0.441, 0.484, 0.528), (0.280, 0.374, 0.410))
FROST_STD = ((0.106, 0.065, 0.060), (0.084, 0.087, 0.089), (0.084, 0.087, 0.089), (0.112, 0.112, 0.117),
             (0.174, 0.170, 0.163), (0.138, 0.168, 0.186))
LUMA_CV2 = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY (snow)
LUMA_REF = (0.2989, 0.5870, 0.1140)  # the reference's rgb2gray (frost on grey images)


# ---- random draws: on the generator's device, then moved to the images' ----

def _gen_device(g: torch.Generator | None, device: torch.device) -> torch.device:
    return g.device if g is not None else device


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator | None, device: torch.device,
             dtype: torch.dtype = F64) -> Tensor:
    """``numpy.random.uniform(lo, hi, shape)``, in float64 unless the reference has no such draw to match."""
    r = torch.rand(shape, generator=g, dtype=dtype, device=_gen_device(g, device))
    return (lo + (hi - lo) * r).to(device)


def _normal(shape: tuple[int, ...], loc: float, scale: float, g: torch.Generator | None,
            device: torch.device) -> Tensor:
    """``numpy.random.normal(loc, scale, shape)`` in float64."""
    return (loc + scale * torch.randn(shape, generator=g, dtype=F64, device=_gen_device(g, device))).to(device)


# ---- filters and resampling ----

def _border_index(n: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Source index of each position -pad .. n-1+pad under scipy's 'nearest', 'reflect' or 'mirror' border."""
    i = torch.arange(-pad, n + pad, device=device)
    if mode == "nearest" or n == 1:
        return i.clamp(0, n - 1)
    period = 2 * n if mode == "reflect" else 2 * n - 2  # reflect: edge repeated (d c b a | a b c d); mirror: not
    j = i.remainder(period)
    return torch.where(j >= n, period - 1 - j if mode == "reflect" else period - j, j)


def _gauss1d(sigma: float, radius: int) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=F64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@lru_cache(maxsize=128)
def _gauss_matrix(n: int, sigma: float, radius: int, mode: str) -> Tensor:
    """(n, n) matrix of a 1D Gaussian filter (weights exp(-x^2 / 2 sigma^2) on -radius..radius, normalised) with
    the border folded in: one matmul per axis, faster than a one-channel conv at these sizes."""
    k = _gauss1d(sigma, radius)
    src = _border_index(n, radius, mode, torch.device("cpu")).unfold(0, 2 * radius + 1, 1)  # (n, taps)
    m = torch.zeros(n, n, dtype=F64)
    m.scatter_add_(1, src, k.expand(n, -1).contiguous())
    return m


def _gaussian_filter(x: Tensor, sigma: tuple[float, float], truncate: float | None, mode: str,
                     radius: int | None = None) -> Tensor:
    """scipy.ndimage.gaussian_filter over the last two dims (what skimage's ``gaussian`` calls): radius
    int(truncate * sigma + 0.5), or ``radius`` as given (OpenCV's kernel size)."""
    for dim, s in ((-2, sigma[0]), (-1, sigma[1])):
        if s > 1e-15:
            r = radius if radius is not None else int(truncate * s + 0.5)
            m = _gauss_matrix(x.shape[dim], s, r, mode).to(x)
            x = m @ x if dim == -2 else x @ m.T
    return x


def _clipped_zoom(x: Tensor, z: float) -> Tensor:
    """The reference's clipped_zoom: centre crop of side ceil(n / z), scipy.ndimage.zoom (order 1) by ``z``;
    returns the zoomed crop, round(crop * z) pixels a side, at least the image's size."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / z), math.ceil(w / z)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (round(ch * z), round(cw * z))
    if size == (ch, cw):
        return crop
    flat = crop.reshape(-1, 1, ch, cw)
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=True)  # scipy zoom's grid_mode=False
    return out.reshape(*x.shape[:-2], *size)


@lru_cache(maxsize=64)
def _pil_box_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) weights of PIL's ``resize`` with the BOX filter along one axis: each output pixel averages
    the input pixels whose centres fall in its box (one pixel when enlarging, the one NEAREST picks too)."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    rows = []
    for o in range(n_out):
        center = (o + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        inside = [i for i in range(lo, hi) if -0.5 <= (i - center + 0.5) / max(scale, 1.0) < 0.5]
        rows.append([1.0 / len(inside) if i in inside else 0.0 for i in range(n_in)])
    return torch.tensor(rows, dtype=F64)


# ---- noise ----

def gaussian_noise(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    return (x + c * _normal(x.shape, 0.0, 1.0, g, x.device).to(x.dtype)).clamp(0, 1)


def shot_noise(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    rate = (x * c).to(_gen_device(g, x.device))
    return (torch.poisson(rate, generator=g).to(x.device) / c).clamp(0, 1)


def impulse_noise(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    """skimage's 's&p': each value is replaced with probability ``c``, by 0 or 1 with equal odds."""
    u = _uniform(x.shape, 0.0, 1.0, g, x.device)
    return torch.where(u < c, (u < c / 2).to(x.dtype), x)


# ---- blur ----

@lru_cache(maxsize=32)
def _disk(radius: float, alias_sigma: float) -> Tensor:
    """The reference's anti-aliased disk: a normalised disk on a 17 px (or 2r+1) grid, then cv2.GaussianBlur."""
    half = 8 if radius <= 8 else int(radius)
    ax = torch.arange(-half, half + 1, dtype=F64)
    disk = ((ax[:, None] ** 2 + ax[None, :] ** 2) <= radius ** 2).to(F64)
    disk /= disk.sum()
    # cv2.GaussianBlur with ksize 3 (5 above radius 8) and its default border, BORDER_REFLECT_101
    blurred = _gaussian_filter(disk, (alias_sigma, alias_sigma), None, "mirror", radius=1 if radius <= 8 else 2)
    r = half - int((blurred.sum(0) > 1e-12).nonzero().min())  # crop the (near-)zero margins: they only cost
    return blurred[half - r:half + r + 1, half - r:half + r + 1]


def defocus_blur(x: Tensor, p: tuple[float, float], g: torch.Generator | None) -> Tensor:
    k = _disk(*p)
    r = (k.shape[0] - 1) // 2
    n, c, h, w = x.shape
    rows, cols = _border_index(h, r, "mirror", x.device), _border_index(w, r, "mirror", x.device)
    xp = x.reshape(n * c, 1, h, w)[:, :, rows][:, :, :, cols]
    return F.conv2d(xp, k.to(x).view(1, 1, *k.shape)).view(n, c, h, w).clamp(0, 1)


@lru_cache(maxsize=16)
def _glass_waves(h: int, w: int, d: int) -> list[Tensor]:
    """The visited pixels (see ``glass_blur``) grouped into waves that can run at once: visit (i, j) (i-th row,
    j-th column in visit order) goes in wave 2d * i + j. Two visits that can touch a common pixel are less than
    2d apart in both coordinates, so they land in different waves and in visit order; within a wave no two
    touch, so running the waves one after another reproduces the sequential loop exactly."""
    i, j = torch.meshgrid(torch.arange(h - 2 * d), torch.arange(w - 2 * d), indexing="ij")
    wave = (2 * d * i + j).flatten()
    order = torch.argsort(wave, stable=True)
    return [wv for wv in order.split(torch.bincount(wave, minlength=1).tolist()) if len(wv)]


def glass_blur(x: Tensor, p: tuple[float, int, int], g: torch.Generator | None) -> Tensor:
    """Gaussian blur, quantise to uint8, move pixels locally, blur again. The reference visits rows H-d .. d+1
    and columns W-d .. d+1 (descending) ``iterations`` times and at each draws (dx, dy) in [-d, d) and runs
    ``x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]``; on an H x W x 3 array those are numpy views, so
    the pixel is copied from its neighbour, not swapped. Grey images get the same copy, as RGB would."""
    sigma, d, iterations = p
    n, c, h, w = x.shape
    x = (_gaussian_filter(x, (sigma, sigma), 4.0, "nearest") * 255).floor() / 255  # np.uint8(blur * 255)
    rows, cols = torch.arange(h - d, d, -1), torch.arange(w - d, d, -1)
    pos = (rows[:, None] * w + cols[None, :]).flatten().to(x.device)  # visited pixels in visit order
    perm = torch.arange(h * w, device=x.device).repeat(n, 1)  # perm[k] = original pixel now at k
    waves = [wv.to(x.device) for wv in _glass_waves(h, w, d)]
    for _ in range(iterations):
        # (n, visits, 2) offsets (dx, dy) for this pass, int8 to keep 224 px batches small
        offsets = torch.randint(-d, d, (n, len(pos), 2), generator=g, dtype=torch.int8,
                                device=_gen_device(g, x.device)).to(x.device)
        for wv in waves:
            source = pos[wv] + offsets[:, wv, 1].long() * w + offsets[:, wv, 0]  # row + dy, column + dx
            perm[:, pos[wv]] = perm.gather(1, source)
    x = x.reshape(n, c, h * w).gather(2, perm[:, None, :].expand(n, c, h * w)).view(n, c, h, w)
    return _gaussian_filter(x, (sigma, sigma), 4.0, "nearest").clamp(0, 1)


def _motion_blur(x: Tensor, radius: int, sigma: float, angle: Tensor) -> Tensor:
    """The reference's ImageMagick-free motion blur: 2r+1 Gaussian-weighted copies shifted along ``angle``
    (degrees, one per image) with edges replicated, stopping (without renormalising) once a shift leaves the image."""
    n, c, h, w = x.shape
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=F64)
    k = torch.exp(-taps ** 2 / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    k = (k / k.sum()).to(angle.device)
    rad = torch.deg2rad(angle)[:, None]
    py, px = width * torch.sin(rad), width * torch.cos(rad)
    hyp = torch.sqrt(py ** 2 + px ** 2)
    i = taps.to(angle.device)[None, :]
    dy = -torch.ceil(i * py / hyp - 0.5).long()
    dx = -torch.ceil(i * px / hyp - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).cumprod(1).to(F64)
    weights = (k[None, :] * inside).to(x.dtype).to(x.device)
    dy, dx = dy.to(x.device), dx.to(x.device)
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for t in range(width):
        rows = (ar_h[None, :] - dy[:, t:t + 1]).clamp(0, h - 1)  # shifted[y, x] = img[y - dy, x - dx], clamped
        cols = (ar_w[None, :] - dx[:, t:t + 1]).clamp(0, w - 1)
        idx = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        out += weights[:, t, None, None] * flat.gather(2, idx)
    return out.view(n, c, h, w)


def motion_blur(x: Tensor, p: tuple[int, float], g: torch.Generator | None) -> Tensor:
    angle = _uniform((x.shape[0],), -45.0, 45.0, g, x.device)
    return _motion_blur(x, p[0], p[1], angle).clamp(0, 1)


def zoom_blur(x: Tensor, zooms: tuple[float, ...], g: torch.Generator | None) -> Tensor:
    h, w = x.shape[-2:]
    out = x.clone()
    for z in zooms:
        out += _clipped_zoom(x, z)[..., :h, :w]
    return (out / (len(zooms) + 1)).clamp(0, 1)


# ---- weather ----

def _luma(x: Tensor, weights: tuple[float, float, float]) -> Tensor:
    if x.shape[1] == 1:
        return x
    return sum(wt * x[:, i:i + 1] for i, wt in enumerate(weights))


def snow(x: Tensor, p: tuple, g: torch.Generator | None) -> Tensor:
    """Thresholded zoomed noise streaked by motion blur, added with its 180-degree rotation over a brightened
    image; draws: the noise layer, then one streak angle per image."""
    loc, scale, zoom, threshold, radius, sigma, blend = p
    n, _, h, w = x.shape
    layer = _clipped_zoom(_normal((n, 1, h, w), loc, scale, g, x.device), zoom)
    layer = torch.where(layer < threshold, 0.0, layer).clamp(0, 1)
    angle = _uniform((n,), -135.0, -45.0, g, x.device)
    layer = _motion_blur(layer, radius, sigma, angle)
    layer = (torch.round(layer * 255) / 255)[..., :h, :w].to(x.dtype)
    x = blend * x + (1 - blend) * torch.maximum(x, _luma(x, LUMA_CV2) * 1.5 + 0.5)
    return (x + layer + layer.flip(-2, -1)).clamp(0, 1)


def _smooth_field(n: int, h: int, w: int, cells: int, g: torch.Generator | None, device: torch.device) -> Tensor:
    z = _normal((n, 1, cells, cells), 0.0, 1.0, g, device).float()
    return F.interpolate(z, size=(h, w), mode="bicubic", align_corners=False)


def _needles(n: int, h: int, w: int, length: int, density: float, layers: int, g: torch.Generator | None,
             device: torch.device) -> Tensor:
    """``layers`` sets of line segments ``length`` px long, each set at its own angle and masked to patches."""
    seeds = (_uniform((n * layers, 1, h, w), 0.0, 1.0, g, device, torch.float32) < density).float()
    cs = F.pad(seeds, (length, 0)).cumsum(-1)
    lines = cs[..., length:] - cs[..., :-length]  # box filter along x: each seed becomes a segment
    theta = _uniform((n * layers,), 0.0, math.pi, g, device, torch.float32)
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    rot = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(rot, [n * layers, 1, h, w], align_corners=False)
    lines = F.grid_sample(lines, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mask = torch.sigmoid(3 * _smooth_field(n * layers, h, w, 3, g, device))
    return (lines * mask).view(n, layers, h, w).sum(1, keepdim=True)


def _standardise(t: Tensor) -> Tensor:
    return (t - t.mean((1, 2, 3), keepdim=True)) / (t.std((1, 2, 3), keepdim=True) + 1e-8)


def frost_texture(n: int, h: int, w: int, g: torch.Generator | None, device: torch.device) -> Tensor:
    """(n, 3, h, w) procedural frost in [0, 1]: long and short needles (12% and 4% of the side), softened by
    ~1 px at 224 px, over a smooth field; standardised, then given the colour statistics of one of the six
    reference photos. Like the reference (six photos, random crops), a bank of up to six textures twice the
    image's size is made per call and each image gets a random crop of one: the cost does not grow with the batch."""
    side, bank = min(h, w), min(n, len(FROST_MEAN))
    bh, bw = 2 * h, 2 * w
    crystals = (_needles(bank, bh, bw, max(round(0.12 * side), 1), 30 / side ** 2, 8, g, device)
                + _needles(bank, bh, bw, max(round(0.04 * side), 1), 300 / side ** 2, 8, g, device))
    soft = side / 224
    if soft > 0.3:
        crystals = _gaussian_filter(crystals, (soft, soft), 2 / soft, "mirror")
    structure = _standardise(_standardise(crystals) + 0.7 * _smooth_field(bank, bh, bw, 4, g, device))
    photo = torch.randint(0, len(FROST_MEAN), (bank,), generator=g, device=_gen_device(g, device)).to(device)
    mean = torch.tensor(FROST_MEAN, device=device)[photo][:, :, None, None]
    std = torch.tensor(FROST_STD, device=device)[photo][:, :, None, None]
    textures = (mean + std * structure).clamp(0, 1).view(bank, 3, bh * bw)
    pick = torch.randint(0, bank, (n,), generator=g, device=_gen_device(g, device)).to(device)
    top = torch.randint(0, h + 1, (n,), generator=g, device=_gen_device(g, device)).to(device)
    left = torch.randint(0, w + 1, (n,), generator=g, device=_gen_device(g, device)).to(device)
    rows = top[:, None] + torch.arange(h, device=device)
    cols = left[:, None] + torch.arange(w, device=device)
    idx = (rows[:, :, None] * bw + cols[:, None, :]).view(n, 1, h * w).expand(n, 3, h * w)
    return textures[pick].gather(2, idx).view(n, 3, h, w)


def frost(x: Tensor, p: tuple[float, float], g: torch.Generator | None) -> Tensor:
    texture = frost_texture(x.shape[0], x.shape[2], x.shape[3], g, x.device).to(x.dtype)
    if x.shape[1] == 1:
        texture = _luma(texture, LUMA_REF)
    return (p[0] * x + p[1] * texture).clamp(0, 1)


def plasma_fractal(n: int, mapsize: int, decay: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    """The reference's diamond-square height map, (n, mapsize, mapsize) in [0, 1], for a batch at once."""
    m = torch.zeros(n, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(a: Tensor) -> Tensor:
        return (a.double() / 4 + wibble * _uniform(tuple(a.shape), -wibble, wibble, g, device)).float()

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        m[:, half::step, half::step] = wibbled_mean(squares)
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        m[:, half::step, 0::step] = wibbled_mean(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step //= 2
        wibble /= decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def fog(x: Tensor, p: tuple[float, float], g: torch.Generator | None) -> Tensor:
    strength, decay = p
    n, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()  # the next power of two
    plasma = plasma_fractal(n, mapsize, decay, g, x.device)[:, None, :h, :w].to(x.dtype)
    peak = x.amax((1, 2, 3), keepdim=True)
    return ((x + strength * plasma) * peak / (peak + strength)).clamp(0, 1)


def brightness(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    """HSV value + c, clipped; in RGB that scales each pixel by v'/v (a black pixel becomes grey v')."""
    v = x.amax(1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    return torch.where(v > 0, x * v_new / v.clamp(min=1e-12), v_new).clamp(0, 1)


# ---- digital ----

def contrast(x: Tensor, c: float, g: torch.Generator | None) -> Tensor:
    mean = x.mean((2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def elastic_transform(x: Tensor, p: tuple[float, float, float], g: torch.Generator | None) -> Tensor:
    """Optional random affine (three control points jittered by ``affine`` x side, cv2.warpAffine with reflected
    borders), then a displacement field: uniform(-1, 1) noise per pixel and axis, Gaussian-smoothed (sigma x side,
    truncate 3, reflect) and scaled by ``amp`` x side, sampled bilinearly with reflected borders (map_coordinates).
    Draws: the affine jitter (3 x 2), then the x field, then the y field."""
    amp, sigma, affine = p
    n, c, h, w = x.shape
    if affine > 0:
        x = _random_affine(x, affine * min(h, w), g)
    field = _uniform((n, 2, h, w), -1.0, 1.0, g, x.device).float()
    field = _gaussian_filter(field, (sigma * h, sigma * w), 3.0, "reflect") * (amp * h)
    dx, dy = field[:, 0], field[:, 1]
    cols = torch.arange(w, device=x.device)[None, None, :] + dx
    rows = torch.arange(h, device=x.device)[None, :, None] + dy
    grid = torch.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], -1)  # align_corners=False: -0.5 .. n-0.5
    out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp(0, 1)


def _random_affine(x: Tensor, jitter: float, g: torch.Generator | None) -> Tensor:
    n, _, h, w = x.shape
    center = torch.tensor([h // 2, w // 2], dtype=F64, device=x.device)
    sq = min(h, w) // 3
    src = torch.stack([center + sq, torch.stack([center[0] + sq, center[1] - sq]), center - sq])  # (3, 2): (x, y)
    dst = src + _uniform((n, 3, 2), -jitter, jitter, g, x.device).float().double()  # the reference's float32 jitter
    ones = torch.ones(3, 1, dtype=F64, device=x.device)
    # inverse map (dst -> src) directly: warpAffine samples src at M^-1 (x, y)
    inv = torch.linalg.solve(torch.cat([dst, ones.expand(n, 3, 1)], -1), src.expand(n, 3, 2)).transpose(1, 2)
    # to grid_sample's normalised coordinates with align_corners=True (pixel i <-> 2i/(n-1) - 1)
    to_norm = torch.tensor([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]], dtype=F64, device=x.device)
    from_norm = torch.linalg.inv(to_norm)
    theta = (to_norm[:2] @ torch.cat([inv, torch.tensor([[[0, 0, 1.0]]], dtype=F64, device=x.device)
                                     .expand(n, 1, 3)], 1) @ from_norm).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def pixelate(x: Tensor, frac: float, g: torch.Generator | None) -> Tensor:
    """PIL: resize to int(side * frac) with BOX and back (the reference goes back with NEAREST, make_*_c.py with
    BOX: enlarging, both pick the same pixel); one matrix per axis."""
    h, w = x.shape[-2:]
    mats = [(_pil_box_matrix(int(n * frac), n) @ _pil_box_matrix(n, int(n * frac))).to(x) for n in (h, w)]
    return (mats[0] @ x @ mats[1].T).clamp(0, 1)


def jpeg_compression(x: Tensor, quality: int, g: torch.Generator | None) -> Tensor:
    """libjpeg at ``quality`` (torchvision.io, what PIL's save/open gives byte for byte), on the CPU."""
    u8 = (x * 255).round().to(torch.uint8).cpu()
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its image codecs for TorchCodec; nothing to act on
        warnings.filterwarnings("ignore", message=".*TorchVision are deprecated", category=DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(u8), quality=quality))
    return (torch.stack(decoded).to(x.device).to(x.dtype) / 255)


OPS: dict[str, Op] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness,
    "contrast": contrast, "elastic_transform": elastic_transform, "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
