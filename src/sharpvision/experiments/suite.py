"""An experiment suite: a base recipe and axes whose product is the grid of cells (one training run each).

A suite is YAML (shipped ones in ``configs/suites/``)::

    name: paper-tiny
    recipe: tiny.yaml                  # a recipe file or a shipped recipe's name
    overrides: [schedule.epochs=2]     # applied to every cell
    axes:                              # the grid, in this order
      model:                           # a named axis: each value is a label with the overrides it sets
        vit: {model.name: vit_micro}
        resnet: {model.name: resnet_micro}
      setting:
        vanilla: {}
        sam: {optim.sam: true}
      data.label_noise: [0.0, 0.4]     # a field axis: each value sets that field
      seed: [0, 1, 2]
    analysis: [hessian, sparsity]      # ``sharpvision analyze`` pieces on every finished cell
    analysis_settings: {sample: 1024}  # how they measure (the ``sharpvision analyze`` flags of the same names)

A suite of several tables names them as ``grids``: each grid picks labels of some axes (an axis it does not name
contributes all its labels) and may add analysis pieces for its cells. A cell that two grids share is one cell,
trained once; across grids the first axis still varies slowest (put ``seed`` first and an interrupted suite has
every table at one seed before any at two)::

    axes: {seed: [0, 1, 2], model: {...}, setting: {...}, data.fraction: [0.25, 1.0]}
    grids:
      table2: {model: [vit, resnet], data.fraction: ['1.0'], analysis: [hessian]}
      table4: {setting: [vanilla, sam]}

Settings that depend on two axes at once (SAM's rho chosen per family *and* per data size) are ``where`` rules:
each sets fields on the cells whose labels match all of its ``when``::

    where:
      - {when: {model: vit, train_images: '6000'}, set: {optim.rho: 0.05, train.matched_loss: 0.1}}

``claims`` names the claim set the report tests on the suite (``paper``, the default, or ``ladder``), and a
claim set checks when the suite loads that the suite has the cells its tests need. ``smoke: true`` declares a
suite whose numbers mean nothing (a test of the machinery): its report says so and decides no claim.

Every cell is checked as a recipe when the suite is loaded, so a bad value fails before anything trains.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sharpvision import config as svconfig
from sharpvision.errors import SharpvisionError


class SuiteError(SharpvisionError, ValueError):
    """A suite file, axis, value or filter is wrong; the message names it."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis labels (in axis order) and the recipe overrides they set."""

    labels: tuple[tuple[str, str], ...]
    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        """``model=vit,setting=sam,seed=0``: the cell's name in results and on disk."""
        return ",".join(f"{axis}={label}" for axis, label in self.labels)

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", self.key)

    def label(self, axis: str) -> str | None:
        return dict(self.labels).get(axis)


@dataclass(frozen=True)
class Grid:
    """One table of a suite: the labels it keeps per axis (an axis not named keeps all) and its extra analysis."""

    keep: dict[str, tuple[str, ...]] = field(default_factory=dict)
    analysis: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    axes: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # axis -> label -> overrides
    analysis: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)  # the YAML as written, to refuse a changed suite
    grids: dict[str, Grid] = field(default_factory=dict)  # none: the whole product of the axes is one grid
    analysis_settings: dict[str, Any] = field(default_factory=dict)  # analysis.run.Settings fields
    where: tuple[tuple[dict[str, str], tuple[str, ...]], ...] = ()  # (labels to match, overrides they set)
    claims: str = "paper"  # the claim set its report tests (sharpvision.experiments.claimsets)
    smoke: bool = False  # a test of the machinery: its numbers mean nothing
    tables: tuple[str, ...] = ()  # the tables its report writes (sharpvision.experiments.tables)

    def cells(self) -> list[Cell]:
        """Every grid's cells once, in a fixed order: the first axis varies slowest, then grid by grid."""
        seen: dict[str, Cell] = {}
        for grid in self.grids.values() or [Grid()]:
            for cell in self._product(grid):
                seen.setdefault(cell.key, cell)
        first = list(self.axes[next(iter(self.axes))]) if self.axes else []
        return sorted(seen.values(), key=lambda c: first.index(c.labels[0][1]))  # stable: grid order kept

    def grid_cells(self, grid: str) -> list[Cell]:
        """The cells of one named grid (one table)."""
        return self._product(self.grids[grid])

    def analysis_of(self, cell: Cell) -> tuple[str, ...]:
        """The suite's analysis pieces plus those of every grid the cell belongs to, each once."""
        extra = [p for name, g in self.grids.items() if g.analysis and cell in self.grid_cells(name)
                 for p in g.analysis]
        return tuple(dict.fromkeys([*self.analysis, *extra]))

    def _product(self, grid: Grid) -> list[Cell]:
        names = list(self.axes)
        kept = [[(label, self.axes[a][label]) for label in grid.keep.get(a, self.axes[a])] for a in names]
        out = []
        for combo in itertools.product(*kept):
            labels = tuple((axis, label) for axis, (label, _) in zip(names, combo))
            overrides = self.overrides + tuple(o for _, (_, sets) in zip(names, combo) for o in sets)
            out.append(Cell(labels, overrides + self._where_sets(labels)))
        return out

    def where_of(self, cell: Cell) -> tuple[str, ...]:
        """The overrides the ``where`` rules set on ``cell`` (those matching all its labels)."""
        return self._where_sets(cell.labels)

    def _where_sets(self, labels: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
        return tuple(o for when, sets in self.where if all((a, v) in labels for a, v in when.items()) for o in sets)

    def with_where(self, rules: list[Any]) -> Suite:
        """This suite under other ``where`` rules (those of another version of its YAML), to compare the cells
        each version sets."""
        where = tuple(_where(Path(self.name), i, rule, self.axes) for i, rule in enumerate(rules))
        return dataclasses.replace(self, where=where, source={**self.source, "where": rules})

    def recipe_of(self, cell: Cell) -> svconfig.Config:
        """The cell's validated recipe, named after the suite and the cell."""
        return svconfig.load(self.recipe, [*cell.overrides, f"name={self.name}"])


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite (a file, or a shipped suite's name such as ``paper-tiny``)."""
    path = _find(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SuiteError(f"suite {path}: cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise SuiteError(f"suite {path}: expected a mapping with name, recipe and axes")
    keys = ("name", "recipe", "overrides", "axes", "analysis", "analysis_settings", "grids", "where", "claims",
            "smoke", "tables")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise SuiteError(f"suite {path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(keys)}")
    for key in ("name", "recipe"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SuiteError(f"suite {path}: {key} must be a non-empty string")
    axes = {axis: _axis(path, axis, values) for axis, values in _mapping(path, "axes", data.get("axes"))}
    grids = {name: _grid(path, name, spec, axes) for name, spec in _mapping(path, "grids", data["grids"])} \
        if "grids" in data else {}
    if not isinstance(data.get("smoke", False), bool):
        raise SuiteError(f"suite {path}: smoke must be true or false")
    suite = Suite(data["name"], data["recipe"], tuple(_strings(path, "overrides", data.get("overrides", []))),
                  axes, tuple(_strings(path, "analysis", data.get("analysis", []))), data, grids,
                  _analysis_settings(path, data.get("analysis_settings", {})),
                  tuple(_where(path, i, rule, axes) for i, rule in enumerate(_list(path, "where", data))),
                  _claim_set(path, data.get("claims", "paper")), data.get("smoke", False),
                  _tables(path, _strings(path, "tables", data.get("tables", []))))
    _check(path, suite)
    return suite


def select(cells: list[Cell], only: list[str], shard: str | None) -> list[Cell]:
    """Cells matching every ``axis=label[,label...]`` filter (one of the labels, for each filter), then every N-th
    of them from the I-th (``shard`` is ``I/N``)."""
    for item in only:
        axis, sep, wanted = item.partition("=")
        known = {a for c in cells for a, _ in c.labels}
        if not sep or axis not in known:
            raise SuiteError(f"--only {item!r}: expected AXIS=LABEL with an axis of the suite "
                             f"({', '.join(sorted(known))})")
        labels = {lab for c in cells for a, lab in c.labels if a == axis}
        chosen = wanted.split(",")
        for label in chosen:
            if label not in labels:
                raise SuiteError(f"--only {item!r}: {axis} has no value {label!r}; it has {', '.join(sorted(labels))}")
        cells = [c for c in cells if c.label(axis) in chosen]
    if shard is None:
        return cells
    match = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise SuiteError(f"--shard {shard!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    i, n = int(match[1]), int(match[2])
    return cells[i - 1::n]


def _find(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    shipped = svconfig.shipped_recipes() / "suites" / f"{path.name.removesuffix('.yaml')}.yaml"
    if not path.suffix and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in (svconfig.shipped_recipes() / "suites").glob("*.yaml"))
    raise SuiteError(f"suite {path}: no such file, and no shipped suite of that name (shipped: {', '.join(names)})")


def _mapping(path: Path, key: str, value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, dict) or not value:
        raise SuiteError(f"suite {path}: {key} must be a non-empty mapping")
    return [(str(k), v) for k, v in value.items()]


def _strings(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"suite {path}: {key} must be a list of strings")
    return value


def _axis(path: Path, axis: str, values: Any) -> dict[str, tuple[str, ...]]:
    """label -> overrides. A field axis (``seed``, ``data.fraction``) lists values; a named axis maps labels to
    the fields they set."""
    if isinstance(values, list) and values:
        if "." not in axis and axis not in ("seed",):
            raise SuiteError(f"suite {path}: axis {axis!r} lists values, so it must be a recipe field such as seed "
                             "or data.fraction (or map each label to the fields it sets)")
        return {_text(v): (f"{axis}={_text(v)}",) for v in values}
    if isinstance(values, dict) and values:
        out = {}
        for label, sets in values.items():
            if not isinstance(sets, dict):
                raise SuiteError(f"suite {path}: axes.{axis}.{label} must map fields to values, e.g. "
                                 "{optim.sam: true}")
            out[str(label)] = tuple(f"{k}={_text(v)}" for k, v in sets.items())
        return out
    raise SuiteError(f"suite {path}: axes.{axis} must be a non-empty list of values or a mapping of labels")


def _grid(path: Path, name: str, spec: Any, axes: dict[str, dict[str, tuple[str, ...]]]) -> Grid:
    """A grid's kept labels per axis (each must be a label of that axis) and its analysis pieces."""
    if not isinstance(spec, dict):
        raise SuiteError(f"suite {path}: grids.{name} must map axes to the labels it keeps, e.g. {{model: [vit]}}")
    keep = {}
    for axis, labels in spec.items():
        if axis == "analysis":
            continue
        if axis not in axes:
            raise SuiteError(f"suite {path}: grids.{name}: {axis!r} is not an axis ({', '.join(axes)})")
        if not isinstance(labels, list) or not labels:
            raise SuiteError(f"suite {path}: grids.{name}.{axis} must be a non-empty list of labels")
        labels = [v if isinstance(v, str) else _text(v) for v in labels]  # '0.04' and 0.04 name one label
        missing = [v for v in labels if v not in axes[axis]]
        if missing:
            raise SuiteError(f"suite {path}: grids.{name}.{axis}: {', '.join(missing)} not a label of {axis} "
                             f"({', '.join(axes[axis])})")
        keep[axis] = tuple(labels)
    return Grid(keep, tuple(_strings(path, f"grids.{name}.analysis", spec.get("analysis", []))))


def _list(path: Path, key: str, data: dict[str, Any]) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise SuiteError(f"suite {path}: {key} must be a list")
    return value


def _where(path: Path, i: int, rule: Any, axes: dict[str, dict[str, tuple[str, ...]]]
           ) -> tuple[dict[str, str], tuple[str, ...]]:
    """One ``where`` rule: labels of existing axes to match, and the fields it sets."""
    name = f"where[{i}]"
    if not isinstance(rule, dict) or set(rule) != {"when", "set"} or not isinstance(rule["when"], dict) \
            or not isinstance(rule["set"], dict) or not rule["when"] or not rule["set"]:
        raise SuiteError(f"suite {path}: {name} must be {{when: {{axis: label, ...}}, set: {{field: value, ...}}}}")
    when = {}
    for axis, label in rule["when"].items():
        label = label if isinstance(label, str) else _text(label)
        if axis not in axes or label not in axes[axis]:
            known = f"{axis} has {', '.join(axes[axis])}" if axis in axes else f"axes are {', '.join(axes)}"
            raise SuiteError(f"suite {path}: {name}.when: {axis}={label} matches no cell ({known})")
        when[axis] = label
    return when, tuple(f"{k}={_text(v)}" for k, v in rule["set"].items())


def _claim_set(path: Path, name: Any) -> str:
    from sharpvision.experiments.claimsets import CLAIM_SETS
    if name not in CLAIM_SETS:
        raise SuiteError(f"suite {path}: claims {name!r} unknown; choose from {', '.join(CLAIM_SETS)}")
    return name


def _tables(path: Path, names: list[str]) -> tuple[str, ...]:
    from sharpvision.experiments.tables import TABLES
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise SuiteError(f"suite {path}: tables {', '.join(unknown)} unknown; choose from {', '.join(TABLES)}")
    return tuple(names)


def _analysis_settings(path: Path, value: Any) -> dict[str, Any]:
    from sharpvision.analysis.run import Settings
    if not isinstance(value, dict):
        raise SuiteError(f"suite {path}: analysis_settings must be a mapping such as {{sample: 1024}}")
    try:
        Settings(**value)
    except TypeError as e:
        known = ", ".join(f.name for f in dataclasses.fields(Settings))
        raise SuiteError(f"suite {path}: analysis_settings: {e} (known: {known})") from None
    return dict(value)


def _text(value: Any) -> str:
    """A YAML value as override text that parses back to the same value."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _check(path: Path, suite: Suite) -> None:
    from sharpvision.analysis.run import PIECES  # the analysis stack loads only when a suite is checked
    bad = [p for p in (*suite.analysis, *(p for g in suite.grids.values() for p in g.analysis)) if p not in PIECES]
    if bad:
        raise SuiteError(f"suite {path}: analysis {', '.join(bad)} unknown; choose from {', '.join(PIECES)}")
    for cell in suite.cells():
        try:
            suite.recipe_of(cell)
        except svconfig.ConfigError as e:
            raise SuiteError(f"suite {path}: cell {cell.key}: {e}") from None
    from sharpvision.experiments.claimsets import CLAIM_SETS
    problem = CLAIM_SETS[suite.claims].check(suite)
    if problem:
        raise SuiteError(f"suite {path}: claims {suite.claims}: {problem}")
