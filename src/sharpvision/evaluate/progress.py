"""The progress bar of the long evaluations (corruptions, MNIST-C, attacks: tens of seconds to minutes): shown on a
terminal only, so logs, pipes and tests stay quiet."""

from __future__ import annotations

from collections.abc import Iterable, Sized

from tqdm.auto import tqdm


def bar(batches: Iterable, per_batch: int, desc: str, enabled: bool) -> tqdm:
    """A bar of ``per_batch`` passes for each of ``batches`` (total unknown when they have no length); tqdm's
    ``disable=None`` turns it off unless stderr is a terminal."""
    total = len(batches) * per_batch if isinstance(batches, Sized) else None
    return tqdm(total=total, desc=desc, unit="pass", leave=False, disable=None if enabled else True)
