"""Running a batch twice through the same model: what the second pass must not change.

SAM's two passes, the analysis measurements and the FLOP counter all run extra forward passes on a live model;
these keep BatchNorm running statistics and dropout masks as one pass would leave them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@contextmanager
def frozen_bn_stats(model: nn.Module | None) -> Iterator[None]:
    """Run a forward pass without changing BatchNorm running statistics.

    SAM's second pass sees perturbed weights; its batch statistics must not leak into the running
    estimates used at test time (davda54/sam #17). Snapshot-and-restore is exact for any momentum
    (including ``momentum=None``) and, unlike toggling ``momentum``, never changes module attributes,
    so a compiled model keeps one graph.
    """
    if model is None:
        yield
        return
    saved = [(buf, buf.clone()) for mod in model.modules() if isinstance(mod, nn.modules.batchnorm._NormBase)
             for name in _NORM_BUFFERS if (buf := getattr(mod, name, None)) is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


@contextmanager
def replay_rng() -> Iterator[Callable[[], None]]:
    """Yield a function that rewinds torch's CPU (and CUDA) RNG to where the block started.

    Calling it before SAM's second pass gives both passes the same dropout / drop-path masks, as the
    JAX reference does with one PRNG key. The RNG then ends where one pass would leave it, so with
    rho = 0 a SAM run follows the base optimizer's run exactly, random stream included.
    """
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None  # the current device's

    def rewind() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)

    yield rewind
