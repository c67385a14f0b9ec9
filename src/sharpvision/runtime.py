"""Where and how a run's tensors live, decided once from the recipe: device, precision, memory format, threads,
seeds. Training, evaluation and analysis all start here, so they agree on what a recipe means."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sharpvision.config import Config, ConfigError
from sharpvision.flops import peak_flops, train_flops_per_image


@dataclass
class Runtime:
    """Where and how tensors run, decided once from the recipe (and, for the last three fields, the model)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool = False
    flops_per_image: float = 0.0  # model FLOPs of one training forward + backward (see sharpvision.flops)
    peak_flops: float | None = None  # the device's peak FLOP/s at this precision; None: no MFU

    @classmethod
    def from_config(cls, cfg: Config) -> Runtime:
        name = cfg.train.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' asked for, but torch sees no CUDA device; use 'auto' or 'cpu'")
        precision = cfg.train.precision
        if precision == "auto":
            precision = "bf16" if name == "cuda" else "fp32"
        return cls(torch.device(name), torch.bfloat16 if precision == "bf16" else None)

    @property
    def precision(self) -> str:
        return "fp32" if self.amp_dtype is None else "bf16"

    def prepare(self, cfg: Config, model: nn.Module, example: torch.Tensor) -> nn.Module:
        """Memory format, FLOP count and peak for ``model``; returns the model in its training memory format.

        channels_last (NHWC) speeds up convolutions on tensor cores, so by default it is on for CNNs on CUDA.
        """
        wanted = cfg.train.channels_last
        if wanted is None:
            wanted = self.device.type == "cuda" and sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1
        self.channels_last = bool(wanted)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.flops_per_image = train_flops_per_image(model, self.to_device(example))
        self.peak_flops = peak_flops(self.device, self.precision, cfg.train.peak_tflops)
        return model

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch on the device, in the model's memory format."""
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators: what model init, dropout and augmentation draw from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The block draws as if ``seed_everything(seed)`` had run; the global generators are put back afterwards, so
    rebuilding a run's initialization does not reseed the caller's random streams."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged) for the block, then put back as they were."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_name(device: torch.device) -> str:
    """What results record as their device: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
