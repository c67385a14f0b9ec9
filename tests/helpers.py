"""What the tests share: where the recipes live, the overrides that make a real run take seconds, and whether the
Fashion-MNIST files are installed.

Constants rather than fixtures, so parametrize lists can use them at collection time. Tests that read the real
Fashion-MNIST files carry ``@pytest.mark.needs_fmnist`` (conftest.py registers it and skips them when
:data:`HAVE_FMNIST` is false), so ``-m "not needs_fmnist"`` selects the tests that run anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]  # the checkout; not resolved, so paths match what subprocesses print
CONFIGS = ROOT / "configs"  # links to src/sharpvision/configs, the recipes the package ships
SUITES = CONFIGS / "suites"  # experiment suites (grids of runs over a recipe), not recipes; see test_experiments.py
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if SUITES not in p.parents)
TINY = CONFIGS / "tiny.yaml"
DEMO = CONFIGS / "demo.yaml"
MICRO = CONFIGS / "micro.yaml"

# The Debian package dataset-fashion-mnist (``make setup`` installs it); all four files, as training needs them.
FMNIST = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
HAVE_FMNIST = all((FMNIST / name).is_file() for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS))
NO_FMNIST = f"needs Fashion-MNIST in {FMNIST}: the Debian package dataset-fashion-mnist (make setup installs it)"

# tiny.yaml cut to a few steps: 256 training and 128 test images, 3 steps an epoch, a log line every 2 steps
FAST = ["data.subset_train=256", "data.subset_test=128", "train.max_steps_per_epoch=3", "train.log_every=2"]
ONE_EPOCH = [*FAST, "schedule.epochs=1"]


def sam_variants(adaptive: tuple[bool, ...] = (False, True)) -> list[Any]:
    """``pytest.param``s of every registered SAM variant (``sharpvision.optim.SAM_VARIANTS``), each also as ASAM
    (``adaptive=True``) unless ``adaptive`` says otherwise: a constructor ``(params, base, **kwargs)``, so a test
    of a property all variants share is written once and covers a newly registered variant with no edit."""
    from functools import partial

    from sharpvision.optim import SAM_VARIANTS  # here, not at the top: conftest imports this module

    return [pytest.param(partial(cls, adaptive=a), id=f"{name}-adaptive" if a else name)
            for name, cls in SAM_VARIANTS.items() for a in adaptive]
