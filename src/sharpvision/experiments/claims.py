"""The papers' claims, tested on a suite's results by a rule fixed before the runs.

The rule (printed into every ``claims.json``):

* Each claim is one or more directional tests "A > B". A test *holds* when its two-sided p < 0.05 with the effect in
  the claimed direction, is *contradicted* when p < 0.05 the other way, and is *inconclusive* otherwise (or with
  fewer than 2 seeds). Every test gives its effect (A - B) in points, or as a log ratio for lambda_max and the NTK
  condition number, with its 95% confidence interval and n.
* Paired wherever both sides come from the same seeds: a seed fixes the initialisation, the batch order and (in the
  suites that tie ``data.seed`` to ``seed``) the data draw, so A and B of one seed are a pair and the test is a
  paired t over seeds. Welch's test (unequal variances) only where the two sides share no seeds.
* A claim holds when all its tests hold, is contradicted when any is contradicted, and is inconclusive otherwise.
  "Matches or beats" (claim 3) holds unless the ResNet is significantly better (contradicted), and is inconclusive
  when the ViT's mean is lower but not significantly.
* A claim whose runs are not in the suite, or whose values are not finite (an NTK with kappa = inf is singular: not
  a measurement), is "not measured", with what is missing. A claim that reads a group of runs at chance accuracy
  (within 5 points of 1 / classes) is "undecided": nothing was learnt to compare.
* Corruption accuracy is ``sharpvision eval --corruptions`` on each cell's run (``run/eval/corruptions.json``, read
  by the aggregate); its gain is compared with the clean gain on the same test images.

Cells are found by their labels: axes ``model`` (vit, mixer, resnet, convnext), ``setting`` (vanilla, sam, aug,
sam_aug), ``data.fraction`` and ``data.label_noise`` (numbers) and ``seed``. An axis a claim does not name is pinned
to its reference: the largest data fraction, the smallest label noise, the first label of any other axis.

History: the first rule (before the paper-cpu runs) tested every comparison with Welch's test on fractions and the
lambda_max drop as ``1 - SAM/AdamW``; a re-analysis keeps those verdicts beside the new ones (``reanalysed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sharpvision import paper, stats

ALPHA = 0.05
CHANCE_MARGIN = 0.05  # a group within 5 points of chance accuracy learnt nothing to compare
RULE = ("Two-sided t-tests over seeds, alpha 0.05: paired by seed where both sides share seeds (same "
        "initialisation, batch order and data draw), Welch's otherwise. A test A > B holds when p < 0.05 in the "
        "claimed direction, is contradicted when p < 0.05 the other way, else inconclusive (also with < 2 seeds). "
        "Effects in points (lambda_max and NTK kappa as log ratios) with 95% intervals. A claim holds when all its "
        "tests hold and is contradicted when any is; not finite values are 'not measured'; a group at chance "
        "accuracy makes a claim 'undecided'.")
OLD_RULE = ("Welch's t-test over seeds on fractions (two-sided, unequal variances), alpha 0.05; SAM's gain paired "
            "by seed; lambda_max drop as 1 - SAM/AdamW. Fixed before the paper-cpu runs.")


class Missing(Exception):
    """The runs a claim needs are not in the results."""


Values = dict[str, float]  # seed -> value


def points(values: Values) -> Values:
    """Accuracies (fractions) as points."""
    return {s: 100 * v for s, v in values.items()}


@dataclass(frozen=True)
class Comparison:
    """A directional test "a > b" over seeds, paired on the seeds both sides have."""

    name: str  # "gain mixer > gain vit"
    a: Values
    b: Values
    unit: str = "points"
    paper: str = ""  # the paper's side, short: "+11.0 vs +5.3" (sharpvision.paper)

    def result(self) -> dict[str, Any]:
        a, b = list(self.a.values()), list(self.b.values())
        out: dict[str, Any] = {"compare": self.name, "unit": self.unit, "a": stats.mean_std(a),
                               "b": stats.mean_std(b)} | ({"paper": self.paper} if self.paper else {})
        if not all(map(math.isfinite, a + b)):
            return out | {"effect": None, "ci": None, "p": None, "n": min(len(a), len(b)), "verdict": "not measured",
                          "why": "a value is not finite (kappa = inf: a singular NTK is not a measurement)"}
        shared = [s for s in self.a if s in self.b]
        test = stats.paired([self.a[s] for s in shared], [self.b[s] for s in shared]) if shared else \
            stats.welch(a, b)
        out |= {k: test[k] for k in ("effect", "ci", "p", "n", "test")}
        if test["n"] < 2:
            return out | {"verdict": "inconclusive", "why": "fewer than 2 seeds"}
        return out | {"verdict": stats.verdict(test, ALPHA)}


class Evidence:
    """The finished cells of a suite (``results.json``'s ``cells``), found by label; remembers which groups of
    runs a claim read, so a claim over a group at chance can be told apart."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.cells = [c for c in results.get("cells", {}).values()]
        self.axes: dict[str, list[str]] = results.get("axes", {})
        self.read: list[dict[str, str]] = []

    def by_seed(self, metric: str, **labels: str) -> Values:
        """seed -> ``metric`` of the cells with these labels (other axes at their reference)."""
        want = self._pinned(labels)
        out = {}
        for cell in self.cells:
            got = cell["labels"]
            if all(got.get(a) == v for a, v in want.items()) and metric in cell["metrics"]:
                value = cell["metrics"][metric]  # None: not finite when measured (strict JSON)
                out[got.get("seed", "0")] = math.inf if value is None else float(value)
        if not out:
            raise Missing(f"{metric} of {_describe(want)}")
        self.read.append(want)
        return out

    def accuracy(self, metric: str = "test_accuracy", **labels: str) -> Values:
        return points(self.by_seed(metric, **labels))

    def gain(self, metric: str, model: str, over: str = "vanilla", setting: str = "sam", log: bool = False,
             **labels: str) -> Values:
        """Per-seed ``setting`` - ``over`` in points (or ``log(setting / over)`` with ``log``), paired by seed."""
        a = self.by_seed(metric, model=model, setting=setting, **labels)
        b = self.by_seed(metric, model=model, setting=over, **labels)
        seeds = [s for s in a if s in b]
        if not seeds:
            raise Missing(f"seeds shared by {model} {setting} and {over}")
        if log:
            return {s: _log_ratio(a[s], b[s]) for s in seeds}
        return {s: 100 * (a[s] - b[s]) for s in seeds}

    def at_chance(self) -> list[str]:
        """The groups read so far whose mean test accuracy is within CHANCE_MARGIN of 1 / classes."""
        out = []
        for want in self.read:
            runs = [c for c in self.cells if all(c["labels"].get(a) == v for a, v in want.items())
                    and "test_accuracy" in c["metrics"]]
            if runs:
                mean = sum(c["metrics"]["test_accuracy"] for c in runs) / len(runs)
                classes = runs[0]["metrics"].get("num_classes", 10)
                if mean < 1 / classes + CHANCE_MARGIN:
                    out.append(f"{_describe(want)} at {100 * mean:.1f}% (chance {100 / classes:.0f}%)")
        return list(dict.fromkeys(out))

    def extreme(self, axis: str, largest: bool) -> str:
        labels = self.axes.get(axis, [])
        if not labels:
            raise Missing(f"axis {axis}")
        return sorted(labels, key=float)[-1 if largest else 0]

    def _pinned(self, labels: dict[str, str]) -> dict[str, str]:
        want = {k.replace("__", "."): v for k, v in labels.items()}
        for axis, values in self.axes.items():
            if axis in want or axis == "seed":
                continue
            if axis == "data.fraction":
                want[axis] = self.extreme(axis, largest=True)
            elif axis == "data.label_noise":
                want[axis] = self.extreme(axis, largest=False)
            else:
                want[axis] = values[0]
        return want


def _log_ratio(a: float, b: float) -> float:
    return math.log(a / b) if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) else math.inf


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str  # the paper's own numbers, where the setting matches
    tests: Callable[[Evidence], list[Any]]  # objects with .result() -> a test's dict with its verdict
    matches_or_beats: bool = False  # claim 3's weaker rule (see the module docstring)


def _gains(model_a: str, model_b: str, **labels: str) -> Callable[[Evidence], Comparison]:
    return lambda e: Comparison(f"gain {model_a} > gain {model_b}", e.gain("test_accuracy", model_a, **labels),
                                e.gain("test_accuracy", model_b, **labels), paper=paper.gains(model_a, model_b))


def _lambda_drop(model_a: str, model_b: str) -> Callable[[Evidence], Comparison]:
    """SAM's drop of lambda_max as -log(SAM / AdamW): symmetric, unbounded both ways (1 - SAM/AdamW is capped at 1
    and unbounded below, so one run that rises dominates its variance)."""
    def drop(e: Evidence, model: str) -> Values:
        return {s: -v for s, v in e.gain("lambda_max", model, log=True).items()}
    return lambda e: Comparison(f"drop {model_a} > drop {model_b}", drop(e, model_a), drop(e, model_b), "log ratio",
                                paper.drops(model_a, model_b))


def _data_efficiency(e: Evidence) -> list[Comparison]:
    small, full = e.extreme("data.fraction", largest=False), e.extreme("data.fraction", largest=True)
    if small == full:
        raise Missing("second data fraction")
    out = []
    for model in ("vit", "mixer"):
        out.append(Comparison(f"{model}: gain at fraction {small} > gain at {full}",
                              e.gain("test_accuracy", model, data__fraction=small),
                              e.gain("test_accuracy", model, data__fraction=full), paper=paper.NOT_RETRIEVED))
        out.append(Comparison(f"{model} at fraction {small}: sam > aug",
                              e.accuracy(model=model, setting="sam", data__fraction=small),
                              e.accuracy(model=model, setting="aug", data__fraction=small), paper=paper.NOT_RETRIEVED))
    return out


def _noise(e: Evidence) -> list[Comparison]:
    hi, lo = e.extreme("data.label_noise", largest=True), e.extreme("data.label_noise", largest=False)
    if hi == lo:
        raise Missing("second label-noise level")
    models = sorted({c["labels"].get("model") for c in e.cells if c["labels"].get("data.label_noise") == hi})
    return [Comparison(f"{m}: gain at noise {hi} > gain at {lo}", e.gain("test_accuracy", m, data__label_noise=hi),
                       e.gain("test_accuracy", m, data__label_noise=lo), paper=paper.noise_gain()) for m in models if m]


def _log(values: Values) -> Values:
    return {s: math.log(v) if v > 0 and math.isfinite(v) else math.inf for s, v in values.items()}


CLAIMS: tuple[Claim, ...] = (
    Claim("gain_by_family", "SAM's accuracy gain is largest for Mixer, then ViT, smallest for ResNet",
          paper.TEXT["gain_by_family"],
          lambda e: [_gains("mixer", "vit")(e), _gains("vit", "resnet")(e)]),
    Claim("lambda_max_by_family", "SAM lowers lambda_max far more for ViT and Mixer than for ResNet (log ratio)",
          paper.TEXT["lambda_max_by_family"],
          lambda e: [_lambda_drop("vit", "resnet")(e), _lambda_drop("mixer", "resnet")(e)]),
    Claim("vit_sam_vs_resnet", "ViT-SAM matches or beats a ResNet of similar size without strong augmentation",
          paper.TEXT["vit_sam_vs_resnet"],
          lambda e: [Comparison("vit sam > resnet vanilla", e.accuracy(model="vit", setting="sam"),
                                e.accuracy(model="resnet", setting="vanilla"),
                                paper=paper.top1("vit", "sam", "resnet", "vanilla"))],
          matches_or_beats=True),
    Claim("data_efficiency", "SAM's gain grows as the data shrinks, and for ViT and Mixer SAM beats AUG on small data",
          paper.TEXT["data_efficiency"],
          _data_efficiency),
    Claim("sparsity_first_block", "SAM lowers the active-neuron fraction in the first block (ViT, Mixer)",
          paper.TEXT["sparsity_first_block"],
          lambda e: [Comparison(f"{m} vanilla > sam", points(e.by_seed("active_fraction_first_block", model=m,
                                                                       setting="vanilla")),
                                points(e.by_seed("active_fraction_first_block", model=m, setting="sam")),
                                paper=paper.QUALITATIVE)
                     for m in ("vit", "mixer")]),
    Claim("ntk_order", "NTK condition number at initialisation orders ResNet < ViT < Mixer (log ratio)",
          paper.TEXT["ntk_order"],
          lambda e: [Comparison(f"{a} > {b}", _log(e.by_seed("ntk_kappa_at_init", model=a, setting="vanilla")),
                                _log(e.by_seed("ntk_kappa_at_init", model=b, setting="vanilla")), "log ratio",
                                paper.kappas(a, b))
                     for a, b in (("vit", "resnet"), ("mixer", "vit"))]),
    Claim("corruption_gain", "SAM's gain is larger under corruption than clean (ViT, Mixer)",
          paper.TEXT["corruption_gain"],
          lambda e: [Comparison(f"{m}: gain corrupted > gain clean", e.gain("mean_corruption_accuracy", m),
                                e.gain("corruption_clean_accuracy", m), paper=paper.corrupted_vs_clean(m))
                     for m in ("vit", "mixer")]),
    Claim("noise_gain", "SAM's gain grows with label noise",
          paper.TEXT["noise_gain"], _noise),
)


def evaluate(results: dict[str, Any], claims: tuple[Claim, ...] = CLAIMS) -> dict[str, Any]:
    """``claims.json``: for each claim, the paper's numbers, ours (effects with 95% intervals), the tests and a
    verdict; ``smoke`` when the suite says its numbers mean nothing (the report greys every verdict)."""
    return {"suite": results.get("suite"), "smoke": bool(results.get("smoke", False)), "alpha": ALPHA,
            "rule": RULE, "claims": [judge(claim, Evidence(results)) for claim in claims]}


def judge(claim: Claim, evidence: Evidence) -> dict[str, Any]:
    out: dict[str, Any] = {"id": claim.id, "claim": claim.statement, "paper": claim.paper}
    try:
        tests = [c.result() for c in claim.tests(evidence)]
    except Missing as e:
        return out | {"verdict": "not measured", "why": f"the suite has no {e}", "tests": []}
    out |= {"tests": tests, "ours": "; ".join(_ours(t) for t in tests)}
    chance = evidence.at_chance()
    if chance:
        return out | {"verdict": "undecided", "why": "at chance: " + "; ".join(chance)}
    return out | {"verdict": _combine(claim, tests)}


def _combine(claim: Claim, tests: list[dict[str, Any]]) -> str:
    verdicts = [t["verdict"] for t in tests]
    if "not measured" in verdicts:  # a contradiction stands; nothing else can be said without the missing test
        return "contradicted" if "contradicted" in verdicts else "not measured"
    if claim.matches_or_beats:
        (t,) = tests
        if t["verdict"] == "contradicted" or t["p"] is None:
            return t["verdict"]
        return "inconclusive" if t["effect"] < 0 else "holds"
    if "contradicted" in verdicts:
        return "contradicted"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


def _ours(test: dict[str, Any]) -> str:
    unit = "" if test["unit"] == "points" else f" ({test['unit']})"
    return f"{test['compare']}: {stats.fmt_effect(test, 2 if test['unit'] == 'log ratio' else 1)}{unit}, " \
           f"{stats.fmt_p(test['p'])}, n = {test['n']}"


def _describe(labels: dict[str, str]) -> str:
    return ", ".join(f"{a}={v}" for a, v in labels.items()) or "any cell"
