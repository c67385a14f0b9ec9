"""The -C corruption suite (Hendrycks & Dietterich 2019) at any image size: 15 corruptions x 5 severities.

``corrupt`` applies one corruption to a batch of [0, 1] images (N, C, H, W), C = 1 or 3, on any device;
``corruption_accuracy`` evaluates a model on every corruption x severity from the normalised batches the data
pipeline yields; ``mce`` / ``relative_mce`` compare two such evaluations as Hendrycks & Dietterich (and the
ConvNeXt paper's Table 8) do; ``write_corrupted`` saves a corrupted copy of a test set in the CIFAR-10-C layout.

The severity table follows the image size: ``imagenet`` for 128 px and more, ``cifar`` for 32 px, and for every
other size from 2 px ``<side>px``, ``cifar`` scaled to the side (``28px`` for Fashion-MNIST / MNIST; how, in
``corruption_tables``). How each op follows its reference, grey images, and why frost uses a procedural texture:
``corruption_ops``.

Randomness comes from a ``torch.Generator``; the evaluation seeds one per corruption x severity from ``seed``, so
a result depends on the seed, the device and the batch sequence, not on which other corruptions were asked for.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from statistics import fmean

import numpy as np
import torch
from torch import Tensor, nn

from sharpvision.errors import SharpvisionError
from sharpvision.evaluate.corruption_ops import OPS
from sharpvision.evaluate.corruption_tables import MIN_SIDE, TABLES, lookup
from sharpvision.evaluate.progress import bar as progress_bar

CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(name for names in CORRUPTION_GROUPS.values() for name in names)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

class CorruptionError(SharpvisionError, ValueError):
    """A bad corruption request (name, severity, table, image size without a table, images): one line naming it."""


ErrorTable = Mapping[str, Mapping[int | str, float]]  # corruption -> severity -> top-1 error (JSON keys: strings)


def table_for(img_size: int) -> str:
    """The severity table for images whose shorter side is ``img_size``: ``imagenet`` from 128 px, ``cifar`` at
    32 px, else ``<img_size>px`` (``cifar`` scaled to the side); a side under 2 px is a CorruptionError (a
    ValueError)."""
    if img_size >= 128:
        return "imagenet"
    if img_size == 32:
        return "cifar"
    if img_size < MIN_SIDE:
        raise CorruptionError(f"no corruption severity table for {img_size} px images: the suite runs on images of "
                              f"{MIN_SIDE} px or more")
    return f"{img_size}px"


def severity_table(name: str) -> dict[str, tuple]:
    """The table called ``name`` (``imagenet``, ``cifar`` or ``<side>px``): corruption -> five severities'
    parameters."""
    found = lookup(name)
    if found is None:
        raise CorruptionError(f"unknown corruption table {name!r}: choose from {', '.join(TABLES)} or <side>px "
                              f"(side >= {MIN_SIDE}, e.g. 64px)")
    return found


def resolve_names(spec: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """Corruption names from ``spec``: None or 'all' for the suite, else names and group names (noise, blur,
    weather, digital), comma-separated or as a list; in the suite's order, each once."""
    if spec is None:
        return CORRUPTIONS
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    wanted: set[str] = set()
    for part in parts:
        if part == "all":
            wanted.update(CORRUPTIONS)
        elif part in CORRUPTION_GROUPS:
            wanted.update(CORRUPTION_GROUPS[part])
        elif part in OPS:
            wanted.add(part)
        else:
            _unknown(part, groups=True)
    if not wanted:
        raise CorruptionError("no corruption names given")
    return tuple(name for name in CORRUPTIONS if name in wanted)


def _unknown(name: str, groups: bool = False) -> None:
    also = f" or a group ({', '.join(CORRUPTION_GROUPS)})" if groups else ""
    raise CorruptionError(f"unknown corruption {name!r}: choose from {', '.join(CORRUPTIONS)}{also}")


def check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    """The severities as a tuple; anything but an integer 1-5 is a CorruptionError naming it."""
    out = tuple(severities)
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5:
            raise CorruptionError(f"corruption severity {s!r} out of range: severities are the integers 1-5")
    if not out:
        raise CorruptionError("no corruption severities given")
    return out


def _check_table(table: str | None, h: int, w: int) -> str:
    if table is None:
        return table_for(min(h, w))
    severity_table(table)
    return table


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise CorruptionError(f"corrupt takes float images (N, C, H, W) with C = 1 or 3 in [0, 1], "
                         f"got {images.dtype} {tuple(images.shape)}")


def corrupt(images: Tensor, name: str, severity: int, generator: torch.Generator | None = None,
            table: str | None = None) -> Tensor:
    """``images`` (N, C, H, W) in [0, 1] with corruption ``name`` at ``severity`` (1-5), same shape and dtype.

    ``table`` defaults to the one for the shorter side (``table_for``). ``generator`` (any device; draws are moved
    to the images) makes it reproducible; None uses torch's global generator for the images' device.
    """
    if name not in OPS:
        _unknown(name)
    (severity,) = check_severities([severity])
    _check_images(images)
    params = severity_table(_check_table(table, *images.shape[-2:]))[name][severity - 1]
    return OPS[name](images.float(), params, generator).to(images.dtype)


def stream_seed(seed: int, name: str, severity: int) -> int:
    """The generator seed of one corruption x severity: stable across runs, Python versions and name subsets."""
    return zlib.crc32(f"{seed}/{name}/{severity}".encode())


def _correct(model: nn.Module, x: Tensor, y: Tensor, autocast: Callable[[], AbstractContextManager]) -> Tensor:
    with autocast():
        logits = model(x)
    return (logits.argmax(1) == y).sum()


@torch.no_grad()
def corruption_accuracy(model: nn.Module, batches: Iterable, mean: Sequence[float], std: Sequence[float],
                        names: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                        device: torch.device | str = "cpu", seed: int = 0, table: str | None = None,
                        autocast: Callable[[], AbstractContextManager] = nullcontext, progress: bool = False) -> dict:
    """Top-1 accuracy on every corruption x severity, in one pass over ``batches`` (a progress bar on a terminal
    with ``progress``).

    ``batches`` yields (normalised images, labels) as the data pipeline does; each batch is un-normalised with
    ``mean``/``std`` to [0, 1], corrupted, and normalised again. Returns the table used, ``n``, clean accuracy and
    error, ``accuracy`` and ``errors`` (corruption -> severity -> value), the mean over severities per corruption
    and ``mean_corruption_accuracy`` (over all corruptions and severities).
    """
    names, severities = resolve_names(names), check_severities(severities)
    if table is not None:
        _check_table(table, 0, 0)
    device = torch.device(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    gens = {(nm, sv): torch.Generator(device=device).manual_seed(stream_seed(seed, nm, sv))
            for nm in names for sv in severities}
    correct = torch.zeros(len(names), len(severities), dtype=torch.int64, device=device)
    clean = torch.zeros((), dtype=torch.int64, device=device)
    n, used = 0, table
    was_training = model.training
    model.eval()
    passes = progress_bar(batches, len(names) * len(severities), "corruptions", progress)
    try:
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            used = _check_table(table, *x.shape[-2:])
            images = (x * s + m).clamp(0, 1)
            clean += _correct(model, x, y, autocast)
            for i, nm in enumerate(names):
                for j, sv in enumerate(severities):
                    corrupted = corrupt(images, nm, sv, generator=gens[nm, sv], table=used)
                    correct[i, j] += _correct(model, (corrupted - m) / s, y, autocast)
                    passes.update()
            n += len(y)
    finally:
        passes.close()
        model.train(was_training)
    if n == 0:
        raise CorruptionError("corruption_accuracy: the batches held no examples")
    acc = (correct.double() / n).tolist()
    accuracy = {nm: {sv: acc[i][j] for j, sv in enumerate(severities)} for i, nm in enumerate(names)}
    per_corruption = {nm: fmean(accuracy[nm].values()) for nm in names}
    clean_accuracy = clean.item() / n
    return {"table": used, "seed": seed, "n": n, "clean_accuracy": clean_accuracy, "clean_error": 1 - clean_accuracy,
            "accuracy": accuracy, "errors": {nm: {sv: 1 - a for sv, a in per.items()} for nm, per in accuracy.items()},
            "corruption_accuracy": per_corruption, "mean_corruption_accuracy": fmean(per_corruption.values())}


def _aligned(errors: ErrorTable, baseline: ErrorTable) -> tuple[dict, dict]:
    """Both tables with int severities, checked to cover the same corruptions and severities."""
    ours = {nm: {int(sv): float(e) for sv, e in per.items()} for nm, per in errors.items()}
    base = {nm: {int(sv): float(e) for sv, e in per.items()} for nm, per in baseline.items()}
    if not ours:
        raise CorruptionError("mCE of an empty error table")
    for nm in ours.keys() | base.keys():
        if nm not in ours or nm not in base:
            raise CorruptionError(f"corruption {nm!r} is in only one of the two error tables")
        if ours[nm].keys() != base[nm].keys():
            raise CorruptionError(f"corruption {nm!r}: severities {sorted(ours[nm])} vs baseline {sorted(base[nm])}")
    return ours, base


def _ratio_mean(ours: dict, base: dict, clean: float, base_clean: float) -> float:
    ratios = []
    for nm in ours:
        denominator = sum(e - base_clean for e in base[nm].values())
        if denominator <= 0:
            raise CorruptionError(f"corruption {nm!r}: the baseline's error does not exceed {base_clean:.4f}, "
                             f"so its corruption error cannot normalise")
        ratios.append(sum(e - clean for e in ours[nm].values()) / denominator)
    return 100 * fmean(ratios)


def mce(errors: ErrorTable, baseline_errors: ErrorTable) -> float:
    """Mean corruption error in percent (100 = the baseline): the mean over corruptions of the model's error summed
    over severities divided by the baseline model's (Hendrycks & Dietterich's CE, normalised by AlexNet there)."""
    ours, base = _aligned(errors, baseline_errors)
    return _ratio_mean(ours, base, 0.0, 0.0)


def relative_mce(errors: ErrorTable, clean_error: float, baseline_errors: ErrorTable,
                 baseline_clean_error: float) -> float:
    """Relative mCE in percent: as ``mce`` but of the rise over each model's clean error (how much a model
    degrades, not how bad it is)."""
    ours, base = _aligned(errors, baseline_errors)
    return _ratio_mean(ours, base, clean_error, baseline_clean_error)


def write_corrupted(images: Tensor, labels: Tensor | Sequence[int], out_dir: str | Path,
                    names: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES, seed: int = 0,
                    table: str | None = None, batch_size: int = 1000, device: torch.device | str = "cpu") -> Path:
    """Write a corrupted copy of ``images`` ([0, 1] float or uint8, N x C x H x W) in the CIFAR-10-C layout:
    ``<name>.npy`` uint8 (len(severities) * N, H, W, C) with the severities stacked in order, ``labels.npy``
    (the labels tiled once per severity) and ``manifest.json``. Validates everything before writing anything.
    The generators are seeded as ``corruption_accuracy`` seeds them. Returns ``out_dir``."""
    names, severities = resolve_names(names), check_severities(severities)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise CorruptionError(f"write_corrupted takes images N x C x H x W with C = 1 or 3, got {tuple(images.shape)}")
    labels = torch.as_tensor(labels)
    if len(labels) != len(images):
        raise CorruptionError(f"{len(images)} images but {len(labels)} labels")
    n, c, h, w = images.shape
    used = _check_table(table, h, w)
    device = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for nm in names:
        stack = np.empty((len(severities) * n, h, w, c), dtype=np.uint8)
        for j, sv in enumerate(severities):
            gen = torch.Generator(device=device).manual_seed(stream_seed(seed, nm, sv))
            for start in range(0, n, batch_size):
                chunk = images[start:start + batch_size].to(device)
                chunk = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
                corrupted = corrupt(chunk, nm, sv, generator=gen, table=used)
                stack[j * n + start:j * n + start + len(chunk)] = \
                    (corrupted * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        np.save(out / f"{nm}.npy", stack)
    np.save(out / "labels.npy", np.tile(labels.cpu().numpy().astype(np.int64), len(severities)))
    manifest = {"layout": "CIFAR-10-C: <name>.npy uint8 (severities x N, H, W, C), severities stacked in order",
                "corruptions": list(names), "severities": list(severities), "n": n, "table": used, "seed": seed}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
