"""Batched, device-resident augmentation: the GPU counterpart of the per-image pipeline in ``transforms.py``.

``random_crop`` + ``random_hflip`` + ``BatchRandAugment`` apply, to a whole uint8 batch N x C x H x W on its own
device, what ``v2.RandomCrop(side, padding=side // 8)`` + ``v2.RandomHorizontalFlip()`` + ``SpecRandAugment``
apply image by image in DataLoader workers: same op space, magnitude tables, signs and per-image magnitude
noise, so a recipe means the same on both paths. Every sample draws its own parameters, yet there is no loop
over samples: each op is computed for the whole batch with per-sample parameters and kept where chosen
(``torch.where``), and the five geometric ops share one ``grid_sample`` with per-sample matrices. Nothing
reads a tensor back to the host, so a CUDA stream never stalls. All randomness comes from torch's global RNG
of the batch's device, so a saved RNG state replays the same augmentations.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from sharpvision.data.transforms import SpecRandAugment, rand_augment_params

# torchvision's RandAugment op space, in its order; the magnitude tables come from torchvision itself.
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
_OP = {name: i for i, name in enumerate(OPS)}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
NUM_BINS = SpecRandAugment.LEVELS * 10 + 1  # 101 magnitude bins: timm's 0-10 scale in steps of 0.1


def _check_batch(x: Tensor, uint8: bool = False) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a batch N x C x H x W, got shape {tuple(x.shape)}")
    if uint8 and (x.dtype != torch.uint8 or x.shape[1] not in (1, 3)):
        raise ValueError(f"expected uint8 images with 1 or 3 channels, got {x.dtype} with {x.shape[1]} channels")


def random_crop(x: Tensor, padding: int) -> Tensor:
    """Zero-pad each side by ``padding`` and crop back to H x W at a per-sample uniform offset in [0, 2 * padding].

    Same distribution as ``v2.RandomCrop((H, W), padding=padding)`` (fill 0) applied to every image; one gather
    with per-sample row / column indices instead of a loop.
    """
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x.clone()
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n x 1 x h x 1
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n x 1 x 1 x w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_hflip(x: Tensor, p: float = 0.5) -> Tensor:
    """Flip each sample left-right with probability ``p`` (``v2.RandomHorizontalFlip(p)`` per image)."""
    _check_batch(x)
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@functools.lru_cache(maxsize=32)
def _tables(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-op magnitude for each of the 101 bins (len(OPS) x 101, float64) and whether the op is signed.

    Read from ``v2.RandAugment._AUGMENTATION_SPACE`` itself (translations scale with the image size), so the
    values are torchvision's float32 ones; cached per size and device so a call copies nothing from the host.
    """
    rows, signed = [], []
    for name in OPS:
        magnitudes_fn, is_signed = v2.RandAugment._AUGMENTATION_SPACE[name]
        values = magnitudes_fn(NUM_BINS, height, width)
        rows.append(torch.zeros(NUM_BINS, dtype=torch.float64) if values is None else values.to(torch.float64))
        signed.append(is_signed)
    wide = _wide(device)
    return torch.stack(rows).to(device, wide), torch.tensor(signed, device=device)


def _wide(device: torch.device) -> torch.dtype:
    """float64 for magnitudes and matrices (torchvision computes them in Python floats), where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def _column(v: Tensor) -> Tensor:
    return v.reshape(-1, 1, 1, 1)


def _geometric(x: Tensor, ops: Tensor, mag: Tensor) -> Tensor:
    """ShearX/Y, TranslateX/Y and Rotate as one bilinear ``grid_sample`` (fill 0) with per-sample matrices.

    Each sample's inverse matrix is the one ``F.affine`` / ``F.rotate`` builds for it (shear about the top-left
    corner, ``int()`` translations, rotation about the centre); other samples get the identity. The grid is
    built with elementwise ops rather than ``bmm`` so that TF32 matmul settings cannot blur it.
    """
    n, _, h, w = x.shape
    zero = torch.zeros_like(mag)
    is_op = {name: ops == _OP[name] for name in GEOMETRIC}
    shear_about_corner = is_op["ShearX"] | is_op["ShearY"]
    sx = torch.where(is_op["ShearX"], torch.atan(mag), zero)
    sy = torch.where(is_op["ShearY"], torch.atan(mag), zero)
    tx = torch.where(is_op["TranslateX"], torch.trunc(mag), zero)
    ty = torch.where(is_op["TranslateY"], torch.trunc(mag), zero)
    rot = torch.where(is_op["Rotate"], torch.deg2rad(-torch.remainder(mag, 360.0)), zero)
    cx = torch.where(shear_about_corner, zero - w * 0.5, zero)
    cy = torch.where(shear_about_corner, zero - h * 0.5, zero)

    # torchvision's _get_inverse_affine_matrix (scale 1), vectorised
    cos_sy, tan_sx = torch.cos(sy), torch.tan(sx)
    a = torch.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / cos_sy
    d = torch.cos(rot) - c * tan_sx
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    theta = torch.stack([m0, m1, m2, m3, m4, m5], dim=1).to(torch.float32)

    # torchvision's _affine_grid: pixel-centred base grid, matrix rescaled by half the size
    t = torch.cat([theta[:, :3] / (0.5 * w), theta[:, 3:] / (0.5 * h)], dim=1)
    gx = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=x.device)[None, None, :]
    gy = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=x.device)[None, :, None]
    t = t[:, :, None, None]
    grid = torch.stack([gx * t[:, 0] + gy * t[:, 1] + t[:, 2], gx * t[:, 3] + gy * t[:, 4] + t[:, 5]], dim=-1)
    warped = F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.round_().to(torch.uint8)


def _blend(x: Tensor, degenerate: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's ``_blend``: ``x * r + degenerate * (1 - r)``, clamped and truncated to uint8."""
    one_minus = _column(1.0 - ratio).to(torch.float32)
    ratio = _column(ratio).to(torch.float32)
    # addcmul, not a * b + c: one rounding like torchvision's fused ``add_(alpha=)``, so results match exactly
    return torch.addcmul(x.to(torch.float32) * ratio, degenerate, one_minus).clamp_(0, 255).to(torch.uint8)


def _grayscale_floor(x: Tensor) -> Tensor:
    """torchvision's float grayscale of a uint8 RGB batch (ITU-R 601-2 weights), floored, N x 1 x H x W."""
    r, g, b = x.unbind(dim=1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _color(x: Tensor, factor: Tensor) -> Tensor:
    """``F.adjust_saturation``: blend with the grayscale image; identity on 1-channel images, as torchvision."""
    if x.shape[1] == 1:
        return x
    return _blend(x, _grayscale_floor(x), factor)


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    """``F.adjust_contrast``: blend with the image's mean (floored) grayscale level."""
    gray = _grayscale_floor(x) if x.shape[1] == 3 else x.to(torch.float32)
    return _blend(x, gray.mean(dim=(-3, -2, -1), keepdim=True), factor)


def _sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """``F.adjust_sharpness``: blend the interior with torchvision's 3x3 smoothing (1s around a 5), borders kept.

    The blur is an exact integer sum / 13 instead of a float conv: it rounds to the same integers as
    torchvision's conv (k / 13 is never within 1/26 of a half) and is immune to cuDNN's TF32.
    """
    h, w = x.shape[-2:]
    if h <= 2 or w <= 2:
        return x
    xi = x.to(torch.int32)
    total = sum(xi[..., i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3)) + 4 * xi[..., 1:-1, 1:-1]
    blurred = (total.to(torch.float32) / 13.0).round_()
    out = x.to(torch.float32)
    view = out[..., 1:-1, 1:-1]
    view.addcmul_(blurred - view, _column(1.0 - factor).to(torch.float32))
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(x: Tensor, bits: Tensor) -> Tensor:
    """``F.posterize``: keep the top ``bits`` bits of every value."""
    mask = (255 << (8 - bits.to(torch.int64))) & 255
    return x & _column(mask).to(torch.uint8)


def _solarize(x: Tensor, magnitude: Tensor) -> Tensor:
    """``F.solarize`` at threshold ``255 * magnitude`` (compared in float32, as torchvision's scalar is)."""
    threshold = _column(255.0 * magnitude).to(torch.float32)
    return torch.where(x.to(torch.float32) >= threshold, 255 - x, x)


def _autocontrast(x: Tensor) -> Tensor:
    """``F.autocontrast``: stretch each channel of each image to [0, 255]; constant channels are kept."""
    xf = x.to(torch.float32)
    low = xf.amin(dim=(-2, -1), keepdim=True)
    high = xf.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    inv_scale = (high - low).mul_(1.0 / 255)
    low = torch.where(flat, 0.0, low)
    inv_scale = torch.where(flat, 1.0, inv_scale)
    return xf.sub_(low).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def _equalize(x: Tensor) -> Tensor:
    """``F.equalize`` (PIL's scheme) per channel of each image: one 256-bin histogram per row, then a LUT gather.

    The N*C histograms are one ``scatter_add_`` on an (N*C) x 256 table (deterministic on CUDA for integers).
    """
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).to(torch.int64)
    hist = torch.zeros(n * c, 256, dtype=torch.int32, device=x.device)
    hist.scatter_add_(1, flat, torch.ones(1, dtype=torch.int32, device=x.device).expand_as(flat))
    cum = hist.cumsum(dim=1, dtype=torch.int32)
    last = cum.argmax(dim=1, keepdim=True)  # the largest value present
    step = (h * w - hist.gather(1, last)).div(255, rounding_mode="floor")  # non-max pixels // 255
    lut = (cum[:, :-1] + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1).to(torch.uint8)
    equalized = lut.gather(1, flat).reshape(n, c, h, w)
    return torch.where((step != 0).reshape(n, c, 1, 1), equalized, x)


def _apply_ops(x: Tensor, ops: Tensor, magnitude: Tensor) -> Tensor:
    """Apply op ``OPS[ops[i]]`` with signed magnitude ``magnitude[i]`` (torchvision's units) to sample ``i``.

    Every op is evaluated on the whole batch with per-sample parameters and kept only where chosen: no
    per-sample loop and no host sync, at the price of computing the unused candidates.
    """
    pick = {name: _column(ops == i) for i, name in enumerate(OPS)}
    factor = 1.0 + magnitude
    out = x
    geometric = functools.reduce(torch.logical_or, (pick[name] for name in GEOMETRIC))
    out = torch.where(geometric, _geometric(x, ops, magnitude), out)
    out = torch.where(pick["Brightness"], (x.to(torch.float32) * _column(factor).to(torch.float32))
                      .clamp_(0, 255).to(torch.uint8), out)
    out = torch.where(pick["Color"], _color(x, factor), out)
    out = torch.where(pick["Contrast"], _contrast(x, factor), out)
    out = torch.where(pick["Sharpness"], _sharpness(x, factor), out)
    out = torch.where(pick["Posterize"], _posterize(x, magnitude), out)
    out = torch.where(pick["Solarize"], _solarize(x, magnitude), out)
    out = torch.where(pick["AutoContrast"], _autocontrast(x), out)
    return torch.where(pick["Equalize"], _equalize(x), out)


def _apply_op(x: Tensor, name: str, magnitude: Tensor | float) -> Tensor:
    """Apply one named op to every sample with the given signed magnitude(s): the hook the tests compare with
    torchvision's functional ops through (same code path as ``BatchRandAugment``)."""
    _check_batch(x, uint8=True)
    n = x.shape[0]
    magnitude = torch.as_tensor(magnitude, dtype=_wide(x.device), device=x.device).expand(n)
    return _apply_ops(x, torch.full((n,), _OP[name], device=x.device), magnitude)


class BatchRandAugment:
    """``SpecRandAugment`` for a whole uint8 batch on its device, each sample drawing its own ops and magnitude.

    Per sample: one magnitude level ``clamp(N(magnitude, magnitude_std), 0, 10)`` per call (bin
    ``round(level * 10)`` of 101), then ``num_ops`` times an op drawn uniformly from torchvision's 14 with a
    random sign for signed ops: the same distribution as calling ``SpecRandAugment`` on each image.
    """

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float) -> None:
        if not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError(f"num_ops must be a non-negative integer, got {num_ops!r}")
        if not 0 <= magnitude <= SpecRandAugment.LEVELS:
            raise ValueError(f"magnitude must be in [0, {SpecRandAugment.LEVELS}], got {magnitude}")
        if magnitude_std < 0:
            raise ValueError(f"magnitude_std must be >= 0, got {magnitude_std}")
        self.num_ops = num_ops
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)

    @classmethod
    def from_spec(cls, spec: str) -> BatchRandAugment:
        """Build from a timm spec ("rand-m9-mstd0.5-inc1"), parsed and validated like the per-image path."""
        return cls(*rand_augment_params(spec))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
                f"magnitude_std={self.magnitude_std})")

    def _bins(self, n: int, device: torch.device) -> Tensor:
        """Each sample's magnitude bin, as ``SpecRandAugment.forward`` picks it (round half to even, like Python)."""
        if self.magnitude_std > 0:
            level = torch.randn(n, device=device).to(_wide(device)) * self.magnitude_std + self.magnitude
            return torch.round(level.clamp(0, SpecRandAugment.LEVELS) * 10).to(torch.int64)
        return torch.full((n,), round(self.magnitude * 10), dtype=torch.int64, device=device)

    def __call__(self, x: Tensor) -> Tensor:
        """Augment a uint8 batch N x C x H x W (C = 1 or 3); returns a new batch, same shape, dtype and device."""
        _check_batch(x, uint8=True)
        n, _, h, w = x.shape
        if n == 0 or self.num_ops == 0:
            return x.clone()
        table, signed = _tables(h, w, x.device)
        bins = self._bins(n, x.device)
        for _ in range(self.num_ops):
            ops = torch.randint(len(OPS), (n,), device=x.device)
            negate = signed[ops] & (torch.rand(n, device=x.device) <= 0.5)
            magnitude = table[ops, bins]
            x = _apply_ops(x, ops, torch.where(negate, -magnitude, magnitude))
        return x


__all__ = ["OPS", "BatchRandAugment", "random_crop", "random_hflip"]
