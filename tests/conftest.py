"""Suite-wide pytest setup: the ``needs_fmnist`` marker (skips without the data), the ``slow`` marker (the
process-spawning tests, which CI runs apart) and a one-thread fixture.

The shared constants live in ``helpers.py`` (tests import them at collection time; fixtures could not feed
``parametrize``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import HAVE_FMNIST, NO_FMNIST


def pytest_configure(config: pytest.Config) -> None:
    """Registered, so ``-m needs_fmnist`` / ``-m "not needs_fmnist"`` select by it without an unknown-mark warning.

    Under ``pytest -n N`` (``make test``) each worker process gets one intra-op thread unless the caller chose: the
    tests' models are tiny, so N one-thread processes use the cores far better than one process with N threads, and
    threads of different workers never spin-wait on each other. Set here, before any test module imports torch."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    config.addinivalue_line("markers", f"needs_fmnist: reads the real Fashion-MNIST files; skipped without them "
                                       f"({NO_FMNIST})")
    config.addinivalue_line("markers", "slow: starts worker processes (torchrun jobs, kill-and-resume faults); "
                                       "left out of `make test`, run by `make test-slow` and by CI")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A marked test skips, not errors, on a machine without the data (a marker alone would not skip)."""
    if HAVE_FMNIST:
        return
    skip = pytest.mark.skip(reason=NO_FMNIST)
    for item in items:
        if item.get_closest_marker("needs_fmnist") is not None:
            item.add_marker(skip)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tests of tiny tensors, restored after: on busy shared cores two threads spin-wait on
    each other and a step on a 32 x 6 batch takes ~100x longer. Both sides of every comparison run under it."""
    import torch  # here, not at the top: collecting the suite's config-only files needs no torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
