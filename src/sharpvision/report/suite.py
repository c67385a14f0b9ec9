"""The report of a suite directory, as blocks: what made it, the claims (a figure of effects, then the table), one
short table per grid with the full one folded below, learning curves as small multiples, per-block curvature and
sparsity, and one model's loss landscapes (one colour scale) and attention with and without SAM. Every figure is
drawn from the JSON the suite keeps (result.json, analysis/*.json), so a committed suite redraws its report.
Numbers are computed here and in report.claims / report.tables; report.figures draws."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sharpvision import config as svconfig
from sharpvision import stats
from sharpvision.experiments.aggregate import aggregate
from sharpvision.experiments.suite import Suite, load_suite
from sharpvision.report import claims as claims_view
from sharpvision.report import figures as draw
from sharpvision.report import ladder as ladder_view
from sharpvision.report import tables
from sharpvision.report.doc import Block, Code, Figure, Heading, Text, glossary

BLOCK_PIECES = (  # analysis piece, figure name, title, y label, log scale
    ("hessian", "lambda_max", "top Hessian eigenvalue (lambda_max) per block", "lambda_max", True),
    ("sparsity", "sparsity", "active-neuron fraction per block", "fraction active", False))
PAIR_PIECES = ("landscape.json", "attention.json")  # what the landscape and attention figures are drawn from
PAIR_SETTINGS = ("vanilla", "sam")


@dataclass(frozen=True)
class Finished:
    """A finished cell: its labels (axis order), its result.json and its folder."""

    labels: dict[str, str]
    result: dict[str, Any]
    folder: Path

    def rest(self, *dropped: str) -> dict[str, str]:
        return {a: v for a, v in self.labels.items() if a not in ("seed", *dropped)}


@dataclass(frozen=True)
class SuiteDir:
    root: Path
    suite: Suite
    finished: list[Finished]
    results: dict[str, Any]  # the aggregate, recomputed from the cells (results.json may be older)
    loaded: dict[str, dict[str, Any]]  # each finished cell's result.json by cell key, read once


def load(root: Path) -> SuiteDir:
    """The suite saved in ``root`` and its finished cells, in the suite's order."""
    suite = load_suite(root / "suite.yaml")
    finished, loaded = [], {}
    for cell in suite.cells():
        folder = root / "cells" / cell.folder
        if (folder / "result.json").is_file():
            loaded[cell.key] = json.loads((folder / "result.json").read_text())
            finished.append(Finished(dict(cell.labels), loaded[cell.key], folder))
    return SuiteDir(root, suite, finished, aggregate(suite, root, loaded), loaded)


def pair_models(data: SuiteDir) -> list[str]:
    """The model labels with a landscape or attention picture at a setting of the pair, in the suite's order."""
    return list(dict.fromkeys(f.labels["model"] for f in data.finished if "model" in f.labels and _pictured(f)))


def _pictured(f: Finished) -> bool:
    return f.labels.get("setting") in PAIR_SETTINGS and any((f.folder / "analysis" / name).is_file()
                                                            for name in PAIR_PIECES)


def blocks(data: SuiteDir, claims: dict[str, Any], pair: str | None, figures: Path, shown: str) -> list[Block]:
    """The whole report; ``shown`` is the directory as the user named it (for the commands)."""
    groups = list(data.results["groups"].values())
    smoke = claims_view.is_smoke(claims, data.suite.source)
    ladder = ladder_view.blocks(data.results, figures) if data.results.get("claims") == "ladder" else []
    return [*_header(data, shown), *claims_view.blocks(claims, figures, smoke), *ladder,
            *_tables(data), *_curves(data, figures), *_per_block(data, figures), *_pair(data, pair, figures),
            *glossary([m for m, _, _ in tables.columns_of(groups) if tables.has(groups, m)] + ["n"])]


def _header(data: SuiteDir, shown: str) -> list[Block]:
    runtimes = sorted({", ".join(f"{k} {s[k]}" for k in ("device", "precision", "torch") if s.get(k))
                       for s in (f.result.get("summary", {}) for f in data.finished)} - {""})
    ran = f" Ran on: {'; '.join(runtimes)}." if runtimes else ""
    return [Heading(f"Suite {data.suite.name}", 1),
            Text(f"{data.results['cells_done']} of {data.results['cells_total']} cells finished, from the recipe "
                 f"{data.suite.recipe}.{ran} Made by:"),
            Code((f"sharpvision reproduce {_suite_argument(data, shown)} --out {shown}",
                  f"sharpvision report {shown}"))]


def _suite_argument(data: SuiteDir, shown: str) -> str:
    """The shipped suite's name when the directory holds it unchanged, else the saved file."""
    shipped = svconfig.shipped_recipes() / "suites" / f"{data.suite.name}.yaml"
    if shipped.is_file() and yaml.safe_load(shipped.read_text()) == data.suite.source:
        return data.suite.name
    return f"{shown.rstrip('/')}/suite.yaml"


def _tables(data: SuiteDir) -> list[Block]:
    grids = {f"grid {name}": replace(data.suite, grids={name: grid})
             for name, grid in data.suite.grids.items()} or {"all runs": data.suite}
    axes = [a for a in data.suite.axes if a != "seed"]
    out: list[Block] = [Heading("Results", id="results"),
                        Text("Per grid, the measures to compare side by side; every measure (mean ± std (n)) is "
                             "folded below each table, and results.json has them unrounded.")]
    for name, one_grid in grids.items():
        found = aggregate(one_grid, data.root, data.loaded)
        out += [Heading(name.capitalize(), 3),
                *(tables.grid(list(found["groups"].values()), found["cells"], axes) if found["groups"] else
                  [Text("No cell of this grid has finished.")])]
    return out


def _describe(labels: dict[str, str], short: bool = False) -> str:
    """``vit, sam, data.fraction=0.04``; ``short`` (a panel title): ``vit, sam, fraction=0.04``."""
    def axis(a: str) -> str:
        return a.rsplit(".", 1)[-1].removeprefix("label_") if short else a
    return ", ".join(v if a in ("model", "setting") else f"{axis(a)}={v}" for a, v in labels.items()) or "all runs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def learning_curves(data: SuiteDir, metric: str = "test_accuracy") -> dict[str, dict[str, draw.Band]]:
    """Panel title (the model and the labels but the setting) -> setting -> per epoch (from 1) the mean over seeds of
    ``metric`` in % and its sample standard deviation, from each cell's result.json ``curve``."""
    points: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for f in data.finished:
        title = _describe(f.rest("setting"), short=True)
        for record in f.result.get("curve", []):
            if record.get(metric) is not None:
                points[(title, f.labels.get("setting", "all"))][record["epoch"] + 1].append(100 * record[metric])
    out: dict[str, dict[str, draw.Band]] = {}
    for (title, setting), by_epoch in points.items():
        epochs = sorted(by_epoch)
        bands = [stats.mean_std(by_epoch[e]) for e in epochs]
        out.setdefault(title, {})[setting] = draw.Band(tuple(epochs), tuple(b["mean"] for b in bands),
                                                       tuple(b["std"] or 0.0 for b in bands))
    return out


def _split(curves: dict[str, dict[str, draw.Band]]) -> dict[str, dict[str, draw.Band]]:
    """Panels of at most ``draw.MAX_LINES`` lines: a panel with more settings becomes several, numbered."""
    out = {}
    for title, lines in curves.items():
        names = list(lines)
        chunks = [names[i:i + draw.MAX_LINES] for i in range(0, len(names), draw.MAX_LINES)]
        for i, chunk in enumerate(chunks):
            out[title if len(chunks) == 1 else f"{title} ({i + 1}/{len(chunks)})"] = {n: lines[n] for n in chunk}
    return out


def _curves(data: SuiteDir, figures: Path) -> list[Block]:
    heading = Heading("Learning curves", id="curves")
    curves = _split(learning_curves(data))
    if not curves:
        return [heading, Text("No cell has a per-epoch test accuracy in its result.json.")]
    settings = list(dict.fromkeys(s for lines in curves.values() for s in lines))
    path = draw.panels(curves, figures / "curves.png", "test accuracy (%)", {s: i for i, s in enumerate(settings)})
    return [heading, Figure(path.name, "test accuracy per epoch, one panel per model and setting of the other axes, "
                                       "one colour per setting: the mean over seeds with a band of one standard "
                                       "deviation")]


def per_block(data: SuiteDir, piece: str) -> dict[str, tuple[dict[str, str], dict[str, dict[str, float]]]]:
    """model -> (the labels its comparison is pinned at, setting -> block -> mean over seeds) from each cell's
    ``analysis/<piece>.json``; the other axes are pinned at the first cell's labels, so settings compare alike."""
    by_model: dict[str, list[tuple[Finished, dict[str, float]]]] = defaultdict(list)
    for f in data.finished:
        path = f.folder / "analysis" / f"{piece}.json"
        if path.is_file():
            by_model[f.labels.get("model", "all models")].append((f, json.loads(path.read_text())["per_block"]))
    out = {}
    for model, found in by_model.items():
        pinned = found[0][0].rest("model", "setting")
        by_setting: dict[str, list[dict[str, float]]] = defaultdict(list)
        for f, values in found:
            if f.rest("model", "setting") == pinned:
                by_setting[f.labels.get("setting", "all")].append(values)
        out[model] = (pinned, {s: {b: stats.mean_std([r[b] for r in runs if b in r])["mean"] for b in runs[0]}
                               for s, runs in by_setting.items()})
    return out


def _per_block(data: SuiteDir, figures: Path) -> list[Block]:
    out: list[Block] = []
    for piece, name, title, ylabel, log in BLOCK_PIECES:
        for model, (pinned, by_setting) in per_block(data, piece).items():
            at = f" ({_describe(pinned)})" if pinned else ""
            path = draw.per_block(by_setting, figures / f"{name}_{_slug(model)}.png",
                                            f"{model}: {title}", ylabel, log)
            out.append(Figure(path.name, f"{model}{at}: {title}, per setting, mean over seeds"
                                         f"{' (log scale)' if log else ''}"))
    heading = Heading("Per block: curvature and sparsity", id="per-block")
    return [heading, *out] if out else [heading, Text("No cell has a hessian or sparsity analysis.")]


def _pair(data: SuiteDir, model: str | None, figures: Path) -> list[Block]:
    """The model's loss landscapes (vanilla and SAM side by side, one colour scale) and attention maps, from the
    first cell that has them (its seed) and the cell that differs from it only in setting."""
    heading = Heading(f"Landscape and attention: {model or 'none'}", id="pair")
    anchor = next((f for f in data.finished if model and f.labels.get("model") == model and _pictured(f)), None)
    if anchor is None:
        return [heading, Text("No cell has a landscape or attention analysis (analysis pieces landscape, attention).")]
    cells = {s: f for s in PAIR_SETTINGS for f in data.finished if f.labels == {**anchor.labels, "setting": s}}
    label = {s: f"{model} {s}, seed {f.labels.get('seed', '-')}" for s, f in cells.items()}
    out: list[Block] = [heading]
    planes = {label[s]: json.loads((f.folder / "analysis" / "landscape.json").read_text())["plane"]
              for s, f in cells.items() if (f.folder / "analysis" / "landscape.json").is_file()}
    if planes:
        path = draw.landscapes(planes, figures / f"pair_{_slug(model)}_landscape_2d.png")
        runs = " and ".join(f"{_describe(f.rest())}, seed {f.labels.get('seed', '-')}" for f in cells.values())
        out.append(Figure(path.name, f"training loss on a random filter-normalised plane through the final weights "
                                     f"of {runs}, side by side on one colour scale (top: contours; bottom: "
                                     "surfaces; + marks the trained weights)"))
    for s, f in cells.items():
        if (f.folder / "analysis" / "attention.json").is_file():
            result = json.loads((f.folder / "analysis" / "attention.json").read_text())
            path = draw.attention(result, figures / f"pair_{_slug(model)}_{s}_attention.png",
                                  f"{label[s]}: attention")
            out.append(Figure(path.name, f"{label[s]}: attention maps on test images: rollout, and the CLS token's "
                                         "attention in the last and the first layer"))
    return out
