"""The scale ladder's claims: which way each of the paper's effects moves as the training set and the model grow.

Fixed before the ladder's runs (docs/ladder.md quotes them). The ladder suite's axes: ``model`` (``vit``,
``resnet``, ``mixer`` at the micro width; ``vit2``, ``resnet2`` at twice it), ``setting`` (``vanilla`` = AdamW,
``sam``), ``train_images`` (the training-set size of each rung, a number) and ``seed`` (which also draws the data).

* **Gain vs data**: per seed, the paired difference (ViT's SAM gain - ResNet's SAM gain) in points at every data
  rung, its least-squares slope against log2(training images), and a one-sample t over the seeds' slopes. The
  paper predicts a negative slope (SAM helps the ViT more where data is scarce).
* **Gain vs model size**: the same difference with the 2x-wide pair minus with the micro pair, at the model rung's
  data size, paired by seed. Predicted positive (ViT-B/16 +5.3 vs ResNet-152 +0.8 against ViT-S/16 +3.7 vs
  ResNet-50 +0.7).
* **Sharpness vs size**: log(lambda_max ViT / lambda_max ResNet) with AdamW, against log2(training images) (slope)
  and with the 2x pair minus the micro pair. Predicted positive (the paper's ViT-B/16 is sharper than its ResNet:
  738.8 against 179.8). The verdict uses lambda_max at matched training loss (the first epoch whose training loss
  falls below a level fixed per rung before the runs and shared by its families); the end-of-training value is
  reported beside it as a secondary test, because near-zero loss flattens the Hessian and then measures the loss
  level.
* **The gap**: ViT-SAM minus ResNet-AdamW in points, against log2(training images) (slope) and model size.
  Predicted positive; where its slope holds, the size at which the line crosses zero is given with its interval, and
  a crossing beyond the measured range is an extrapolation, not a finding.

Each test's verdict follows the project's rule (sharpvision.experiments.claims): holds when p < 0.05 in the
predicted direction, contradicted when p < 0.05 the other way, inconclusive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sharpvision import paper, stats
from sharpvision.experiments.aggregate import attack_metric
from sharpvision.experiments.claims import ALPHA, Claim, Comparison, Evidence, Missing, Values

if TYPE_CHECKING:
    from sharpvision.experiments.suite import Cell, Suite

AXIS = "train_images"
MICRO, WIDE = ("vit", "resnet"), ("vit2", "resnet2")


@dataclass(frozen=True)
class Trend:
    """Per-seed slopes of ``values[rung][seed]`` on log2(rung), tested over seeds; ``predicted`` is +1 or -1."""

    name: str
    values: dict[str, Values]  # rung label -> seed -> value
    unit: str
    predicted: int
    of_rungs: tuple[str, ...] = ()  # the suite's rungs: fewer with values make the reading partial, said in its test

    def result(self) -> dict[str, Any]:
        rungs = sorted(self.values, key=float)
        seeds = [s for s in self.values[rungs[0]] if all(s in self.values[r] for r in rungs)]
        x = [math.log2(float(r)) for r in rungs]
        ys = {s: [self.values[r][s] for r in rungs] for s in seeds}
        out: dict[str, Any] = {"compare": self.name, "unit": f"{self.unit} per doubling", "rungs": rungs,
                               "predicted": "positive" if self.predicted > 0 else "negative",
                               "per_rung": {r: stats.mean_std([self.values[r][s] for s in seeds]) for r in rungs}}
        if not all(math.isfinite(v) for y in ys.values() for v in y):
            return out | {"effect": None, "ci": None, "p": None, "n": len(seeds), "verdict": "not measured",
                          "why": "a value is not finite"}
        test = stats.per_seed_slopes(x, ys)
        crossing = test["crossing_x"]
        out |= {k: test[k] for k in ("effect", "ci", "p", "n", "test")}
        if len(rungs) < len(self.of_rungs):
            out["partial"] = f"rungs {', '.join(rungs)} of {', '.join(sorted(self.of_rungs, key=float))}"
            out["test"] += f"; partial: {out['partial']}"
        if crossing is not None:
            lo, hi = min(x), max(x)
            out["crossing_images"] = 2 ** crossing
            out["crossing_images_ci"] = [2 ** c for c in test["crossing_ci"]] if test.get("crossing_ci") else None
            out["crossing_is"] = "within the measured range" if lo <= crossing <= hi else \
                "an extrapolation beyond the measured range, not a finding"
        if len(seeds) < 2:
            return out | {"verdict": "inconclusive", "why": "fewer than 2 seeds with every rung"}
        signed = dict(test, effect=None if test["effect"] is None else self.predicted * test["effect"])
        return out | {"verdict": stats.verdict(signed, ALPHA)}


def _finished_rungs(e: Evidence, of: Any) -> dict[str, Values]:
    """``of`` at every rung that has what it reads (a ladder runs rung by rung: a trend over the rungs finished so
    far is reported with them, and says which); at least two, or the trend is not measured."""
    values, missing = {}, []
    for rung in e.axes.get(AXIS, []):
        try:
            values[rung] = of(e, rung, MICRO)
        except Missing as lacking:
            missing.append(str(lacking))
    values = {r: v for r, v in values.items() if v}
    if len(values) < 2:
        found = ", ".join(sorted(values, key=float)) or "none"
        raise Missing(f"{missing[0] if missing else 'seeds shared'} (a trend needs two {AXIS} rungs with it; "
                      f"found {found})")
    return values


def _model_rung(e: Evidence) -> str:
    """The data size at which the 2x-wide models were trained."""
    rungs = {c["labels"].get(AXIS) for c in e.cells if c["labels"].get("model") in WIDE}
    if len(rungs) != 1:
        raise Missing(f"one {AXIS} rung with the 2x-wide models (found {len(rungs)})")
    return rungs.pop()


def _gain_difference(e: Evidence, rung: str, pair: tuple[str, str]) -> Values:
    vit, resnet = (e.gain("test_accuracy", m, **{AXIS: rung}) for m in pair)
    return {s: vit[s] - resnet[s] for s in vit if s in resnet}


def _sharpness_ratio(e: Evidence, rung: str, pair: tuple[str, str], metric: str) -> Values:
    vit, resnet = (e.by_seed(metric, model=m, setting="vanilla", **{AXIS: rung}) for m in pair)
    return {s: math.log(vit[s] / resnet[s]) if vit[s] > 0 and resnet[s] > 0 else math.inf
            for s in vit if s in resnet}


def _gap(e: Evidence, rung: str, pair: tuple[str, str]) -> Values:
    vit = e.accuracy(model=pair[0], setting="sam", **{AXIS: rung})
    resnet = e.accuracy(model=pair[1], setting="vanilla", **{AXIS: rung})
    return {s: vit[s] - resnet[s] for s in vit if s in resnet}


def _over_data(name: str, unit: str, predicted: int, of: Any) -> Any:
    return lambda e: [Trend(name, _finished_rungs(e, of), unit, predicted, tuple(e.axes.get(AXIS, [])))]


def _over_size(name: str, of: Any, unit: str = "points") -> Any:
    """The paired 2x-minus-micro comparison; over fewer seeds than the suite's (a rung still running) the reading
    is partial and its test says so, as a data trend over the rungs finished so far does."""
    def tests(e: Evidence) -> list[Comparison]:
        rung = _model_rung(e)
        wide, micro = of(e, rung, WIDE), of(e, rung, MICRO)
        shared, planned = sum(s in micro for s in wide), len(e.axes.get("seed", []))
        partial = f"; partial: {shared} of {planned} seeds" if shared < planned else ""
        return [Comparison(name + partial, wide, micro, unit)]
    return tests


def _matched(e: Evidence, r: str, pair: tuple[str, str]) -> Values:
    return _sharpness_ratio(e, r, pair, "lambda_max_matched")


def _end(e: Evidence, r: str, pair: tuple[str, str]) -> Values:
    return _sharpness_ratio(e, r, pair, "lambda_max")


LADDER: tuple[Claim, ...] = (
    Claim("gain_vs_data", "SAM helps the ViT more than the ResNet where data is scarce (slope of the gain "
          "difference on log2 images < 0)",
          paper.TEXT["gain_vs_data"],
          _over_data("gain vit - gain resnet vs log2 images", "points", -1, _gain_difference)),
    Claim("gain_vs_model", "SAM's ViT-over-ResNet gain grows with model size (2x width minus micro > 0)",
          paper.TEXT["gain_vs_model"],
          _over_size("gain vit2 - gain resnet2 > gain vit - gain resnet", _gain_difference)),
    Claim("sharpness_vs_data", "The ViT becomes the sharper network as data grows (slope of log lambda_max ViT / "
          "ResNet at matched training loss > 0; the verdict)",
          paper.TEXT["sharpness_vs_data"],
          _over_data("log(lambda vit / lambda resnet), matched loss, vs log2 images", "log ratio", +1, _matched)),
    Claim("sharpness_vs_data_end", "The same at the end of training (secondary: reported, does not decide)",
          "as above", _over_data("log(lambda vit / lambda resnet), end, vs log2 images", "log ratio", +1, _end)),
    Claim("sharpness_vs_model", "The ViT becomes the sharper network as the model grows (matched training loss)",
          "as above", _over_size("log ratio at 2x width > at micro (matched loss)", _matched, "log ratio")),
    Claim("gap_vs_data", "ViT-SAM closes on ResNet-AdamW as data grows (slope of the gap on log2 images > 0)",
          paper.TEXT["vit_sam_vs_resnet"],
          _over_data("vit sam - resnet adamw vs log2 images", "points", +1, _gap)),
    Claim("gap_vs_model", "ViT-SAM closes on ResNet-AdamW as the model grows (2x width minus micro > 0)",
          "as above", _over_size("gap at 2x width > gap at micro", _gap)),
)


def check(suite: Suite) -> str | None:
    """What the ladder's tests need and the suite lacks, or None: two rungs of data, every family and setting at
    every rung, and the 2x-wide pair at exactly one rung where the micro pair is too."""
    for axis, need in (("model", {*MICRO, *WIDE}), ("setting", {"vanilla", "sam"}), (AXIS, set()), ("seed", set())):
        if axis not in suite.axes:
            return f"the ladder needs an axis {axis!r}"
        missing = need - set(suite.axes[axis])
        if missing:
            return f"axis {axis} lacks {', '.join(sorted(missing))}"
    bad = [r for r in suite.axes[AXIS] if not _number(r)]
    if bad:
        return f"{AXIS} labels must be image counts, not {', '.join(bad)}"
    labels = [dict(c.labels) for c in suite.cells()]
    have = {(lab["model"], lab["setting"], lab[AXIS]) for lab in labels}
    rungs = {lab[AXIS] for lab in labels if lab["model"] in MICRO}
    if len(rungs) < 2:
        return f"the slope tests need at least 2 rungs of {AXIS} for the micro ViT and ResNet (found {len(rungs)})"
    wide = {lab[AXIS] for lab in labels if lab["model"] in WIDE}
    if len(wide) != 1 or not wide <= rungs:
        return f"the 2x-wide models must sit at exactly one {AXIS} rung of the micro ones (found {sorted(wide)})"
    needed = [(m, s, r) for r in rungs for m in MICRO for s in ("vanilla", "sam")] + \
        [(m, s, r) for r in wide for m in WIDE for s in ("vanilla", "sam")]
    absent = [n for n in needed if n not in have]
    if absent:
        m, s, r = absent[0]
        return f"no cell of model={m}, setting={s}, {AXIS}={r}" + (f" (and {len(absent) - 1} more)"
                                                                   if len(absent) > 1 else "")
    return None


def waiting(suite: Suite, cells: list[Cell]) -> str | None:
    """Which of ``cells`` cannot run yet, or None: a ladder cell runs only once its (family, rung) has its choices,
    set by a ``where`` rule from ``ladder-select`` (the matched-loss level, and SAM's rho for a SAM cell), so that no
    cell ever trains with a rho nobody chose."""
    def chosen(cell: Cell) -> bool:
        fields = {o.split("=", 1)[0] for o in suite.where_of(cell)}
        return "train.matched_loss" in fields and ("optim.rho" in fields or cell.label("setting") != "sam")

    pending = sorted({(c.label("model"), c.label(AXIS)) for c in cells if not chosen(c)},
                     key=lambda p: (float(p[1]), p[0]))
    if not pending:
        return None
    names = ", ".join(f"{m} at {r}" for m, r in pending)
    return (f"no choice (rho, matched loss) yet for {names}: run ladder-select at that rung, add its where rules "
            f"(python -m sharpvision.experiments.ladder SELECT_DIR), or narrow with --only {AXIS}=...")


def _number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


FAMILIES = ("vit", "mixer", "resnet", "vit2", "resnet2")


def rung_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ladder's table: per rung and family, AdamW's and SAM's test accuracy (points, mean +- std), SAM's gain
    paired by seed with its 95% interval, and AdamW's lambda_max at matched loss and at the end; per rung and pair
    (micro, 2x), the gap (ViT-SAM minus ResNet-AdamW) and the gain difference (ViT's SAM gain minus ResNet's), in
    points paired by seed, and the ViT / ResNet sharpness log ratio (matched and end) with its interval. What the
    figure draws. Each family row also carries its robustness measures where the cells were evaluated."""
    e = Evidence(results)
    rows = []
    for rung in sorted(e.axes.get(AXIS, []), key=float):
        for model in FAMILIES:
            try:
                gain = stats.one_sample(list(e.gain("test_accuracy", model, **{AXIS: rung}).values()))
            except Missing:
                continue
            row: dict[str, Any] = {AXIS: rung, "model": model, "gain": gain}
            for setting, key in (("vanilla", "adamw"), ("sam", "sam")):
                row[key] = stats.mean_std(list(e.accuracy(model=model, setting=setting, **{AXIS: rung}).values()))
            for metric in ("lambda_max_matched", "lambda_max"):
                try:
                    row[f"adamw_{metric}"] = stats.mean_std(list(e.by_seed(metric, model=model, setting="vanilla",
                                                                           **{AXIS: rung}).values()))
                except Missing:
                    row[f"adamw_{metric}"] = None
            row["robustness"] = _robustness(e, rung, model)
            rows.append(row)
        rows += _pair_rows(e, rung)
    return rows


def robust_measures(metrics: Collection[str]) -> list[str]:
    """The robustness figures among metric names, in reading order: mean corruption accuracy, mean MNIST-C
    accuracy, then PGD accuracy by norm and eps (``sharpvision eval`` on the cell's run)."""
    fixed = [m for m in ("mean_corruption_accuracy", "mnist_c_mean_accuracy") if m in metrics]
    attacks = {m: a for m in metrics if (a := attack_metric(m)) and a[0] == "pgd"}
    return fixed + sorted(attacks, key=lambda m: attacks[m][1:])


def _robustness(e: Evidence, rung: str, model: str) -> list[dict[str, Any]]:
    """Per robustness measure evaluated on both settings of a family at a rung, over the seeds both have: each
    setting's accuracy in points (mean +- std) and SAM's gain paired by seed with its 95% interval."""
    cells = [c for c in e.cells if c["labels"].get(AXIS) == rung and c["labels"].get("model") == model]
    out = []
    for measure in robust_measures({m for c in cells for m in c["metrics"]}):
        try:
            gain = e.gain(measure, model, **{AXIS: rung})
        except Missing:
            continue
        out.append({"measure": measure, "gain": stats.one_sample(list(gain.values())),
                    **{key: stats.mean_std([v for s, v in e.accuracy(measure, model=model, setting=setting,
                                                                     **{AXIS: rung}).items() if s in gain])
                       for setting, key in (("vanilla", "adamw"), ("sam", "sam"))}})
    return out


def _pair_rows(e: Evidence, rung: str) -> list[dict[str, Any]]:
    """One rung's contrasts of each pair (micro, 2x): the gap, the gain difference and the sharpness log ratios."""
    rows: list[dict[str, Any]] = []
    for pair in (MICRO, WIDE):
        for contrast, of in (("gap", _gap), ("gain_difference", _gain_difference)):
            try:
                values = of(e, rung, pair)
            except Missing:
                continue
            if values:
                rows.append({AXIS: rung, "model": f"{pair[0]} / {pair[1]}", "contrast": contrast,
                             "points": stats.one_sample(list(values.values()))})
        for metric in ("lambda_max_matched", "lambda_max"):
            try:
                ratio = _sharpness_ratio(e, rung, pair, metric)
            except Missing:
                continue
            rows.append({AXIS: rung, "model": f"{pair[0]} / {pair[1]}", "metric": metric,
                         "log_ratio": stats.one_sample(list(ratio.values()))})
    return rows


RHOS = ("0.02", "0.05", "0.1", "0.2")
HALF = 0.5  # the matched-loss level: the AdamW selection runs' training loss at half their epochs


def choices(results: dict[str, Any], expected: set[tuple[str, str]] | None = None
            ) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, rung) -> SAM's rho and the matched-loss level, from the selection suite's finished cells
    (``ladder-select``), by rules fixed before any ladder cell ran.

    rho is the one whose runs reach the highest validation accuracy at the last epoch (mean over the selection
    seeds; a tie goes to the smaller rho). The matched-loss level is one per rung, shared by every family there: the
    highest of the families' AdamW training losses at half their epochs, a level each AdamW run has passed by then.
    One level per rung matches SAM with AdamW within a family *and* the ViT with the ResNet, whose own half-epoch
    losses differ 30-fold (0.42 against 0.0125 at 2,350 images). A (model, rung) appears once its own runs have all
    finished and so have the AdamW runs of every family of ``expected`` at that rung (default: those with any
    finished cell), which fix the level: a family's choice never waits for another family's SAM runs."""
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for cell in results.get("cells", {}).values():
        lab = cell["labels"]
        runs.setdefault((lab["model"], lab[AXIS], lab["setting"]), []).append(cell)
    expected = expected if expected is not None else {(m, r) for m, r, _ in runs}
    half = {(m, r): float(f"{sum(map(_loss_at_half, v)) / len(v):.3g}")
            for (m, r, s), v in runs.items() if s == "vanilla" and (m, r) in expected}
    out = {}
    for model, rung in sorted(expected, key=lambda p: (float(p[1]), p[0])):
        settings = {s: runs.get((model, rung, s)) for s in ("vanilla", *(f"rho{r}" for r in RHOS))}
        family = [m for m, r in expected if r == rung]
        if not all(settings.values()) or any((m, rung) not in half for m in family):
            continue
        val = {r: sum(c["metrics"]["val_accuracy"] for c in settings[f"rho{r}"]) / len(settings[f"rho{r}"])
               for r in RHOS}
        adamw = settings["vanilla"]
        out[(model, rung)] = {
            "rho": float(max(RHOS, key=lambda r: (val[r], -float(r)))),
            "val_accuracy": {r: round(v, 4) for r, v in val.items()},
            "adamw_val_accuracy": round(sum(c["metrics"]["val_accuracy"] for c in adamw) / len(adamw), 4),
            "family_loss_at_half": half[(model, rung)],
            "matched_loss": max(half[(m, rung)] for m in family)}
    return out


def _loss_at_half(cell: dict[str, Any]) -> float:
    curve = cell["curve"]
    return float(curve[round(HALF * len(curve)) - 1]["train_loss"])


def unfinished(results: dict[str, Any], expected: list[dict[str, str]]) -> dict[str, list[str]]:
    """rung -> the selection runs (``model setting``) it still waits for: what a user sees of a selection in
    progress."""
    labels = [c["labels"] for c in results.get("cells", {}).values()]
    done = {(lab["model"], lab[AXIS], lab["setting"]) for lab in labels}
    out: dict[str, list[str]] = {}
    for lab in expected:
        if (lab["model"], lab[AXIS], lab["setting"]) not in done:
            out.setdefault(lab[AXIS], []).append(f"{lab['model']} {lab['setting']}")
    return dict(sorted(out.items(), key=lambda item: float(item[0])))


def where_rules(chosen: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The ladder suite's ``where`` rules for those choices."""
    return [{"when": {"model": m, AXIS: r}, "set": {"optim.rho": c["rho"], "train.matched_loss": c["matched_loss"]}}
            for (m, r), c in chosen.items()]


def main(argv: list[str] | None = None) -> int:
    """``python -m sharpvision.experiments.ladder SELECT_DIR``: the choices as the ladder suite's where rules."""
    import json
    import sys
    from pathlib import Path

    import yaml

    from sharpvision.experiments.aggregate import cell_metrics
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "cells").is_dir():
        print(f"usage: python -m sharpvision.experiments.ladder SELECT_DIR (a ladder-select suite directory); "
              f"got {' '.join(args) or 'nothing'}", file=sys.stderr)
        return 2
    from sharpvision.experiments.suite import load_suite
    cells = {}
    for path in sorted((Path(args[0]) / "cells").glob("*/result.json")):
        r = json.loads(path.read_text())
        cells[r["cell"]] = {"labels": r["labels"], "metrics": cell_metrics(r), "curve": r["curve"]}
    suite_cells = [dict(c.labels) for c in load_suite(Path(args[0]) / "suite.yaml").cells()]
    chosen = choices({"cells": cells}, {(lab["model"], lab[AXIS]) for lab in suite_cells})
    for (m, r), c in chosen.items():
        print(f"# {m} at {r} images: rho {c['rho']} (val {c['val_accuracy']}, AdamW {c['adamw_val_accuracy']}); "
              f"AdamW loss at half its epochs {c['family_loss_at_half']}, the rung's matched loss {c['matched_loss']}")
    for rung, runs in unfinished({"cells": cells}, suite_cells).items():
        total = sum(lab[AXIS] == rung for lab in suite_cells)
        print(f"# {rung} images: {total - len(runs)} of {total} runs finished; waiting for {', '.join(runs)}")
    print(yaml.safe_dump({"where": where_rules(chosen)}, sort_keys=False, default_flow_style=None), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
