"""The report of a suite directory, as blocks: what made it, the claims, one table per grid (mean ± std over seeds,
the paper's ImageNet numbers beside the rows that match), learning curves, per-block curvature and sparsity, and
one model's loss landscape and attention with and without SAM. Numbers are computed here; report.figures draws."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sharpvision import config as svconfig
from sharpvision.experiments.aggregate import aggregate, attack_metric
from sharpvision.experiments.suite import Suite, load_suite
from sharpvision.report import figures as draw
from sharpvision.report.doc import Block, Code, Figure, Heading, Table, Text, glossary, mean_std

# Chen et al. 2022 ("When Vision Transformers Outperform ResNets without Pretraining or Strong Data Augmentations"),
# ImageNet at 224 px, Tables 1-2: (vanilla, SAM) where a pair, by our model family label
PAPER: dict[str, dict[str, Any]] = {
    "resnet": {"name": "ResNet-152", "top1": (78.5, 79.3), "lambda_max": (179.8, 42.0), "kappa": 2801.6},
    "vit": {"name": "ViT-B/16", "top1": (74.6, 79.9), "lambda_max": (738.8, 20.9), "kappa": 6206.8},
    "mixer": {"name": "Mixer-B/16", "top1": (66.4, 77.4), "lambda_max": (1644.4, 22.5), "kappa": 14468.0},
}
COLUMNS: tuple[tuple[str, str, float], ...] = (  # metric, header, scale (accuracies in %)
    ("test_accuracy", "test acc. %", 100), ("train_accuracy", "train acc. %", 100),
    ("best_val_accuracy", "best val acc. %", 100), ("lambda_max", "lambda_max", 1), ("trace", "trace", 1),
    ("ntk_kappa_at_init", "NTK kappa at init", 1), ("loss", "loss", 1), ("loss_under_noise", "loss under noise", 1),
    ("active_fraction_first_block", "active fraction, first block", 1),
    ("corruption_clean_accuracy", "clean acc. % (-C images)", 100),
    ("mean_corruption_accuracy", "mean corrupted acc. %", 100), ("mnist_c_mean_accuracy", "MNIST-C acc. %", 100))
BLOCK_PIECES = (  # analysis piece, figure name, title, y label, log scale
    ("hessian", "lambda_max", "top Hessian eigenvalue (lambda_max) per block", "lambda_max", True),
    ("sparsity", "sparsity", "active-neuron fraction per block", "fraction active", False))
PAIR_PNGS = (("landscape_2d.png", "training loss on a random filter-normalised plane through the final weights"),
             ("attention.png", "attention maps on test images: rollout, and the CLS token's attention in the first "
                               "and last layer"))
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
    return f.labels.get("setting") in PAIR_SETTINGS and any((f.folder / "analysis" / png).is_file()
                                                            for png, _ in PAIR_PNGS)


def blocks(data: SuiteDir, claims: dict[str, Any], pair: str | None, figures: Path, shown: str) -> list[Block]:
    """The whole report; ``shown`` is the directory as the user named it (for the commands)."""
    return [*_header(data, shown), *_claims(claims), *_tables(data), *_curves(data, figures),
            *_per_block(data, figures), *_pair(data, pair, figures),
            *glossary([m for m, _, _ in _columns(list(data.results["groups"].values()))
                       if _has(data.results["groups"].values(), m)] + ["n"])]


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


def _claims(claims: dict[str, Any]) -> list[Block]:
    rows = tuple((f"{c['id']}: {c['claim']}", c["paper"], c.get("ours") or c.get("why", ""), c["verdict"])
                 for c in claims["claims"])
    return [Heading("Claims", id="claims-section"),
            Table(("claim", "paper", "ours", "verdict"), rows, id="claims", badge=3,
                  caption="Each claim tested on this suite's runs (claims.json has every test's t and p)."),
            Text(f"Rule: {claims['rule']}")]


def _tables(data: SuiteDir) -> list[Block]:
    grids = {f"grid {name}": replace(data.suite, grids={name: grid})
             for name, grid in data.suite.grids.items()} or {"all runs": data.suite}
    out: list[Block] = [Heading("Results", id="results"),
                        Text("Mean ± sample standard deviation over seeds (n = seeds finished); accuracies in %. "
                             "paper (ImageNet): Chen et al. 2022, Tables 1-2, for the model family at the same "
                             "setting (ImageNet at 224 px: a scale reference, not a target).")]
    for name, one_grid in grids.items():
        table = _table(data, list(aggregate(one_grid, data.root, data.loaded)["groups"].values()))
        out += [Heading(name.capitalize(), 3), table if table else Text("No cell of this grid has finished.")]
    return out


def _table(data: SuiteDir, groups: list[dict[str, Any]]) -> Table | None:
    """One row per group of a grid (its cells but the seed alike), over the seeds the grid keeps."""
    if not groups:
        return None
    axes = [a for a in data.suite.axes if a != "seed"]
    columns = [c for c in _columns(groups) if _has(groups, c[0])]
    papers = [_paper(g["labels"]) for g in groups]
    header = (*axes, *(h for _, h, _ in columns), *(["paper (ImageNet)"] if any(papers) else []))
    rows = tuple((*(g["labels"].get(a, "") for a in axes),
                  *(mean_std(g["metrics"][m], s) if m in g["metrics"] else "" for m, _, s in columns),
                  *([paper] if any(papers) else [])) for g, paper in zip(groups, papers))
    return Table(header, rows)


def _columns(groups: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """The fixed columns, then one per attack, norm and eps the cells were evaluated at."""
    attacks = sorted({m: attack_metric(m) for g in groups for m in g["metrics"] if attack_metric(m)}.items(),
                     key=lambda item: item[1])
    return [*COLUMNS, *((m, f"{attack.upper()} {norm} eps {eps:g} acc. %", 100) for m, (attack, norm, eps) in attacks)]


def _has(groups: Iterable[dict[str, Any]], metric: str) -> bool:
    return any(metric in g["metrics"] for g in groups)


def _paper(labels: dict[str, str]) -> str:
    """The paper's numbers for a row of its family, setting (vanilla or SAM), full data and clean labels."""
    ref, i = PAPER.get(labels.get("model", "")), {"vanilla": 0, "sam": 1}.get(labels.get("setting", ""))
    clean = float(labels.get("data.fraction", 1)) == 1 and float(labels.get("data.label_noise", 0)) == 0
    if ref is None or i is None or not clean:
        return ""
    return f"{ref['name']}: top-1 {ref['top1'][i]}, lambda_max {ref['lambda_max'][i]}, NTK kappa {ref['kappa']}"


def _describe(labels: dict[str, str]) -> str:
    return ", ".join(v if a in ("model", "setting") else f"{a}={v}" for a, v in labels.items()) or "all runs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def learning_curves(data: SuiteDir) -> dict[str, dict[str, dict[str, list[tuple[int, float]]]]]:
    """model -> the other labels -> metric -> (epoch from 1, mean over seeds) of test and train accuracy."""
    points: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for f in data.finished:
        key = (f.labels.get("model", "all models"), _describe(f.rest("model")))
        for record in f.result.get("curve", []):
            for metric, _, _ in draw.STYLES:
                if metric in record:
                    points[(*key, metric)][record["epoch"] + 1].append(record[metric])
    out: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for (model, setting, metric), by_epoch in points.items():
        out.setdefault(model, {}).setdefault(setting, {})[metric] = sorted(
            (epoch, statistics.fmean(values)) for epoch, values in by_epoch.items())
    return out


def _curves(data: SuiteDir, figures: Path) -> list[Block]:
    out: list[Block] = [Heading("Learning curves", id="curves")]
    for model, series in learning_curves(data).items():
        path = draw.learning_curves(series, figures / f"curves_{_slug(model)}.png",
                                              f"{model}: accuracy per epoch")
        out.append(Figure(path.name, f"{model}: test accuracy (solid) and train accuracy (dashed) per epoch, mean "
                                     "over seeds, one colour per setting"))
    return out


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
        out[model] = (pinned, {s: {b: statistics.fmean(r[b] for r in runs if b in r) for b in runs[0]}
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
    """The model's landscape and attention pictures, vanilla then SAM, from the first cell that has one (its seed)
    and the cell that differs from it only in setting."""
    heading = Heading(f"Landscape and attention: {model or 'none'}", id="pair")
    anchor = next((f for f in data.finished if model and f.labels.get("model") == model and _pictured(f)), None)
    if anchor is None:
        return [heading, Text("No cell has a landscape or attention picture (analysis pieces landscape, attention).")]
    cells = {f.labels.get("setting"): f for f in data.finished
             if f.labels == {**anchor.labels, "setting": f.labels.get("setting")}}
    out: list[Block] = [heading]
    for png, what in PAIR_PNGS:
        for setting in PAIR_SETTINGS:
            if setting in cells and (cells[setting].folder / "analysis" / png).is_file():
                name = f"pair_{_slug(model)}_{setting}_{png}"
                shutil.copyfile(cells[setting].folder / "analysis" / png, figures / name)
                out.append(Figure(name, f"{_describe(cells[setting].rest())}, seed "
                                        f"{cells[setting].labels.get('seed', '-')}: {what}"))
    return out
