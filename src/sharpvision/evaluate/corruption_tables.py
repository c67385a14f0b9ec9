"""Severity tables of the corruption suite: one per resolution family, five parameter sets per corruption.

``imagenet`` (images of 128 px and more) is the table of Hendrycks & Dietterich's ``make_imagenet_c.py`` as the
``imagecorruptions`` package (Michaelis et al. 2019) runs it without ImageMagick: motion blur and snow streaks by
its shifted-copies kernel, the fog map sized to the image, and its scale-free elastic transform (displacement
1.25 x alpha x 0.005 of the side, smoothing 0.01 of the side, no affine part). That package is the reference the
tests compare with.

``cifar`` (32 px) is ``make_cifar_c.py``, which made CIFAR-10-C: its constants and its affine + elastic transform
(lengths given as fractions of the side, as the script writes them ``IMSIZE * f``). Its motion blur and snow
streaks came from ImageMagick; here they use the same kernel as ``imagenet``.

Every other size below 128 px gets ``cifar`` scaled to its side, ``<side>px`` (``28px`` for Fashion-MNIST /
MNIST, ``8px`` for the digits), since a small image's object fills its frame as a 32 px CIFAR object does: every
parameter that is a length in pixels is scaled by side/32 (glass-blur sigma, the defocus disk's anti-alias sigma,
motion-blur and snow-streak radius and sigma; radii rounded to whole taps, at least one); parameters relative to
the image carry over unchanged (zoom factors, pixelate fraction, the elastic fractions, the fog map, the frost
texture), as do intensities (noise, brightness, contrast, JPEG quality, blend weights). Three lengths live on the
integer pixel grid, so they grow with the side but never shrink below CIFAR's, where scaling would change their
footprint rather than shrink it: the defocus disk radius (at 28 px, 1 -> 0.875 would drop severity 4's 5-pixel
disk to one pixel, weaker than severity 3), the glass-blur displacement (1 is already the least; rounded), and
the snow zoom (flake size; clipped zoom cannot go below 1).

Every table entry is a tuple of five parameter sets, severity 1 first; the comments in ``IMAGENET`` name the
fields, ``corruption_ops`` uses them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

Params = Any  # one severity's parameters (a number or a tuple), as the corruption's op reads them


def _zooms(*stops: tuple[float, float]) -> tuple[tuple[float, ...], ...]:
    """Zoom-blur factors as ``np.arange(1, stop, step)`` gives them (float steps: 1.11 is included by arange)."""
    return tuple(tuple(float(z) for z in np.arange(1, stop, step)) for stop, step in stops)


def _scaled(table: dict[str, tuple[Params, ...]], name: str, fields: dict[int, str],
            factor: float) -> tuple[Params, ...]:
    """``table[name]`` with the listed fields scaled by ``factor``: ``"len"`` multiplied, ``"taps"`` multiplied and
    rounded (at least 1); ``"grid"`` (``"grid-taps"``: rounded) multiplied only when the factor is above 1."""
    out = []
    for params in table[name]:
        p = list(params)
        for i, kind in fields.items():
            f = max(factor, 1.0) if kind.startswith("grid") else factor
            p[i] = max(1, round(p[i] * f)) if kind.endswith("taps") else p[i] * f
        out.append(tuple(p))
    return tuple(out)


IMAGENET: dict[str, tuple[Params, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std
    "shot_noise": (60, 25, 12, 5, 3),  # photons per unit intensity
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # share of values set to 0 or 1
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # disk radius, anti-alias sigma
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),  # sigma, max offset, passes
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # radius, sigma
    "zoom_blur": _zooms((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),
    # loc, scale, zoom, threshold, streak radius, streak sigma, blend
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),  # image weight, frost weight
    "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),  # strength, fractal wibble decay
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to HSV value
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # factor around the per-channel mean
    # displacement, smoothing sigma, affine jitter: fractions of the side
    "elastic_transform": tuple((1.25 * a, 0.01, 0.0) for a in (0.05, 0.065, 0.085, 0.1, 0.12)),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # size fraction
    "jpeg_compression": (25, 18, 15, 10, 7),  # quality
}

CIFAR: dict[str, tuple[Params, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": _zooms((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

MIN_SIDE = 2  # the smallest image every op runs on (one pixel has no neighbours to blur, pixelate or warp)


@lru_cache(maxsize=32)
def for_side(side: int) -> dict[str, tuple[Params, ...]]:
    """``cifar`` scaled to images of ``side`` pixels (the module docstring says how): the ``<side>px`` table."""
    f = side / 32
    return {
        **CIFAR,
        "defocus_blur": _scaled(CIFAR, "defocus_blur", {0: "grid", 1: "len"}, f),
        "glass_blur": _scaled(CIFAR, "glass_blur", {0: "len", 1: "grid-taps"}, f),
        "motion_blur": _scaled(CIFAR, "motion_blur", {0: "taps", 1: "len"}, f),
        "snow": _scaled(CIFAR, "snow", {2: "grid", 4: "taps", 5: "len"}, f),
    }


PX28 = for_side(28)
TABLES: dict[str, dict[str, tuple[Params, ...]]] = {"imagenet": IMAGENET, "cifar": CIFAR, "28px": PX28}


def lookup(name: str) -> dict[str, tuple[Params, ...]] | None:
    """The table called ``name``: one of ``TABLES`` or ``<side>px`` for a side of ``MIN_SIDE`` or more; None if
    there is no such table."""
    if name in TABLES:
        return TABLES[name]
    match = re.fullmatch(r"([1-9][0-9]*)px", name)
    return for_side(int(match[1])) if match and int(match[1]) >= MIN_SIDE else None
