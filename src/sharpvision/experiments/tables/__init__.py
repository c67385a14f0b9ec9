"""Tables computed from a suite's finished cells, registered by name: a suite names the ones it produces
(``tables:`` in its YAML) and ``sharpvision report DIR`` writes each to ``DIR/tables/NAME.json``, where the docs
read them (scripts/docs_figures.py formats them and computes nothing).

A table is a function of the suite's aggregate (``sharpvision.experiments.aggregate``: its cells' labels and
metrics) returning strict JSON; its statistics go through ``sharpvision.stats``. To add one: a module here with a
``@table("name", "what it shows")`` function, imported below, and a test that checks its numbers by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Build = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Table:
    name: str
    about: str
    build: Build  # the suite's aggregate -> the table as JSON


TABLES: dict[str, Table] = {}


def table(name: str, about: str) -> Callable[[Build], Build]:
    """Register ``build`` as the table ``name``."""
    def register(build: Build) -> Build:
        TABLES[name] = Table(name, about, build)
        return build
    return register


def write(suite_dir: Path, names: list[str] | None = None) -> list[Path]:
    """Write the tables ``names`` (default: the ones the suite names) of the suite in ``suite_dir`` to
    ``suite_dir/tables/NAME.json``, from its finished cells; returns the files written."""
    from sharpvision.experiments.aggregate import aggregate
    from sharpvision.experiments.suite import SuiteError, load_suite

    suite = load_suite(suite_dir / "suite.yaml")
    names = list(suite.tables) if names is None else names
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise SuiteError(f"table {', '.join(unknown)} unknown; choose from {', '.join(TABLES)}")
    results = aggregate(suite, suite_dir)
    out = suite_dir / "tables"
    out.mkdir(exist_ok=True)
    written = []
    for name in names:
        data = {"table": name, "about": TABLES[name].about, "suite": suite.name, "cells_done": results["cells_done"],
                "cells_total": results["cells_total"], **TABLES[name].build(results)}
        (out / f"{name}.json").write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
        written.append(out / f"{name}.json")
    return written


from sharpvision.experiments.tables import roadmap, robustness, sam_gain  # noqa: E402,F401  (register their tables)
