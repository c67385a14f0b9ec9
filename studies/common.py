"""What a study shares with the benchmarks, taken from benchmarks/common.py so that there is one copy: the device,
versions and command a result records, where it is written (benchmarks/results/, the data the docs read), and mean
+- std and paired tests in the shape the committed results have.

A script runs with its own folder first on sys.path, so ``from common import ...`` in studies/ finds this module; it
loads benchmarks/common.py by its path, under another name (the two files share theirs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("benchmarks_common",
                                               Path(__file__).resolve().parents[1] / "benchmarks" / "common.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)

RESULTS = _shared.RESULTS
mean_std = _shared.mean_std
paired = _shared.paired
paired_t_p = _shared.paired_t_p
provenance = _shared.provenance
write_result = _shared.write_result

__all__ = ["RESULTS", "mean_std", "paired", "paired_t_p", "provenance", "write_result"]
