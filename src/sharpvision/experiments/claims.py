"""The papers' claims, tested on a suite's results by a rule fixed before the runs.

The rule (written here before paper-cpu ran, and printed into every ``claims.json``):

* Each claim is one or more directional comparisons "A > B" between groups of runs over seeds. A comparison
  *holds* when Welch's t-test (two-sided, unequal variances) gives p < 0.05 and the means differ in the claimed
  direction, is *contradicted* when p < 0.05 the other way, and is *inconclusive* otherwise (or when a group has
  fewer than 2 seeds).
* A claim holds when all its comparisons hold, is contradicted when any is contradicted, and is inconclusive
  otherwise. "Matches or beats" (claim 3) holds unless the ResNet is significantly better (contradicted), and is
  inconclusive when the ViT's mean is lower but not significantly.
* SAM's gain is paired by seed: the SAM and vanilla runs of one seed share the initialisation and the data order, so
  the gain of seed s is SAM(s) - vanilla(s).
* A claim whose runs are not in the suite is "not measured", with what is missing.
* Corruption accuracy is ``sharpvision eval --corruptions`` on each cell's run (``run/eval/corruptions.json``, read
  by the aggregate); its gain is compared with the clean gain on the same test images.

Cells are found by their labels: axes ``model`` (vit, mixer, resnet, convnext), ``setting`` (vanilla, sam, aug,
sam_aug), ``data.fraction`` and ``data.label_noise`` (numbers) and ``seed``. An axis a claim does not name is pinned
to its reference: the largest data fraction, the smallest label noise, the first label of any other axis.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
RULE = ("Welch's t-test over seeds (two-sided, unequal variances), alpha 0.05: a comparison A > B holds when p < "
        "0.05 in the claimed direction, is contradicted when p < 0.05 the other way, else inconclusive (also when a "
        "group has < 2 seeds). A claim holds when all its comparisons hold and is contradicted when any is. SAM's "
        "gain is paired by seed (same initialisation and data order). Fixed before the paper-cpu runs.")


class Missing(Exception):
    """The runs a claim needs are not in the results."""


@dataclass(frozen=True)
class Comparison:
    name: str  # "mixer > vit"
    a: list[float]
    b: list[float]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"compare": self.name, "a": _summary(self.a), "b": _summary(self.b)}
        if len(self.a) < 2 or len(self.b) < 2:
            return out | {"t": None, "p": None, "verdict": "inconclusive", "why": "fewer than 2 seeds"}
        if not all(map(math.isfinite, self.a + self.b)):
            return out | {"t": None, "p": None, "verdict": "inconclusive",
                          "why": "a value is not finite (kappa = inf: a singular NTK), so no t-test applies"}
        t, p = welch(self.a, self.b)
        verdict = "inconclusive" if not p < ALPHA else ("holds" if t > 0 else "contradicted")
        return out | {"t": t, "p": p, "verdict": verdict}


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value (scipy's; identical samples give t = 0, p = 1)."""
    from scipy import stats
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return (0.0, 1.0) if statistics.fmean(a) == statistics.fmean(b) else \
            (math.copysign(math.inf, statistics.fmean(a) - statistics.fmean(b)), 0.0)
    t, p = stats.ttest_ind(a, b, equal_var=False)
    return float(t), float(p)


class Evidence:
    """The finished cells of a suite (``results.json``'s ``cells``), found by label."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.cells = [c for c in results.get("cells", {}).values()]
        self.axes: dict[str, list[str]] = results.get("axes", {})

    def by_seed(self, metric: str, **labels: str) -> dict[str, float]:
        """seed -> ``metric`` of the cells with these labels (other axes at their reference)."""
        want = self._pinned(labels)
        out = {}
        for cell in self.cells:
            got = cell["labels"]
            if all(got.get(a) == v for a, v in want.items()) and metric in cell["metrics"]:
                out[got.get("seed", "0")] = float(cell["metrics"][metric])
        if not out:
            raise Missing(f"{metric} of {_describe(want)}")
        return out

    def values(self, metric: str, **labels: str) -> list[float]:
        return list(self.by_seed(metric, **labels).values())

    def gain(self, metric: str, model: str, over: str = "vanilla", setting: str = "sam",
             relative: bool = False, **labels: str) -> list[float]:
        """Per-seed ``setting`` - ``over`` (or 1 - setting/over with ``relative``), paired by seed."""
        a = self.by_seed(metric, model=model, setting=setting, **labels)
        b = self.by_seed(metric, model=model, setting=over, **labels)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            raise Missing(f"seeds shared by {model} {setting} and {over}")
        return [1 - a[s] / b[s] if relative else a[s] - b[s] for s in seeds]

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


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str  # the paper's own numbers, where the setting matches
    comparisons: Callable[[Evidence], list[Comparison]]
    matches_or_beats: bool = False  # claim 3's weaker rule (see the module docstring)


def _gains(model_a: str, model_b: str, metric: str = "test_accuracy", relative: bool = False,
           **labels: str) -> Callable[[Evidence], Comparison]:
    return lambda e: Comparison(f"gain {model_a} > gain {model_b}", e.gain(metric, model_a, relative=relative,
                                                                            **labels),
                                e.gain(metric, model_b, relative=relative, **labels))


def _data_efficiency(e: Evidence) -> list[Comparison]:
    small, full = e.extreme("data.fraction", largest=False), e.extreme("data.fraction", largest=True)
    if small == full:
        raise Missing("second data fraction")
    out = []
    for model in ("vit", "mixer"):
        out.append(Comparison(f"{model}: gain at fraction {small} > gain at {full}",
                              e.gain("test_accuracy", model, data__fraction=small),
                              e.gain("test_accuracy", model, data__fraction=full)))
        out.append(Comparison(f"{model} at fraction {small}: sam > aug",
                              e.values("test_accuracy", model=model, setting="sam", data__fraction=small),
                              e.values("test_accuracy", model=model, setting="aug", data__fraction=small)))
    return out


def _noise(e: Evidence) -> list[Comparison]:
    hi, lo = e.extreme("data.label_noise", largest=True), e.extreme("data.label_noise", largest=False)
    if hi == lo:
        raise Missing("second label-noise level")
    models = sorted({c["labels"].get("model") for c in e.cells if c["labels"].get("data.label_noise") == hi})
    return [Comparison(f"{m}: gain at noise {hi} > gain at {lo}", e.gain("test_accuracy", m, data__label_noise=hi),
                       e.gain("test_accuracy", m, data__label_noise=lo)) for m in models if m]


CLAIMS: tuple[Claim, ...] = (
    Claim("gain_by_family", "SAM's accuracy gain is largest for Mixer, then ViT, smallest for ResNet",
          "ImageNet top-1 gain: Mixer-B/16 +11.0, ViT-B/16 +5.3, ResNet-152 +0.8 (Chen et al. Table 2)",
          lambda e: [_gains("mixer", "vit")(e), _gains("vit", "resnet")(e)]),
    Claim("lambda_max_by_family", "SAM lowers lambda_max far more for ViT and Mixer than for ResNet (relative drop)",
          "lambda_max: ViT-B/16 738.8 -> 20.9 (-97%), Mixer-B/16 1644.4 -> 22.5 (-99%), ResNet-152 179.8 -> 42.0 "
          "(-77%) (Chen et al. Table 1)",
          lambda e: [_gains("vit", "resnet", "lambda_max", relative=True)(e),
                     _gains("mixer", "resnet", "lambda_max", relative=True)(e)]),
    Claim("vit_sam_vs_resnet", "ViT-SAM matches or beats a ResNet of similar size without strong augmentation",
          "ViT-B/16-SAM 79.9 vs ResNet-152 78.5 (60M); ViT-S/16-SAM 78.1 vs ResNet-50 76.0 (Chen et al. Tables 1-2)",
          lambda e: [Comparison("vit sam > resnet vanilla", e.values("test_accuracy", model="vit", setting="sam"),
                                e.values("test_accuracy", model="resnet", setting="vanilla"))],
          matches_or_beats=True),
    Claim("data_efficiency", "SAM's gain grows as the data shrinks, and for ViT and Mixer SAM beats AUG on small data",
          "ImageNet 1/10 to full x {vanilla, SAM, AUG, SAM+AUG} (Chen et al. Table 4; cell values not retrieved)",
          _data_efficiency),
    Claim("sparsity_first_block", "SAM lowers the active-neuron fraction in the first block (ViT, Mixer)",
          "Mixer-SAM's first blocks much sparser; ViT's first layer about 10% active (Chen et al. Sec. 4.3)",
          lambda e: [Comparison(f"{m} vanilla > sam", e.values("active_fraction_first_block", model=m,
                                                               setting="vanilla"),
                                e.values("active_fraction_first_block", model=m, setting="sam"))
                     for m in ("vit", "mixer")]),
    Claim("ntk_order", "NTK condition number at initialisation orders ResNet < ViT < Mixer",
          "kappa: ResNet-152 2801.6, ViT-B/16 6206.8, Mixer-B/16 14468.0 (Chen et al. Table 1)",
          lambda e: [Comparison(f"{a} > {b}", e.values("ntk_kappa_at_init", model=a, setting="vanilla"),
                                e.values("ntk_kappa_at_init", model=b, setting="vanilla"))
                     for a, b in (("vit", "resnet"), ("mixer", "vit"))]),
    Claim("corruption_gain", "SAM's gain is larger under corruption than clean (ViT, Mixer)",
          "ViT-B/16 +9.9 on ImageNet-C vs +5.3 clean; Mixer-B/16 +15.0 vs +11.0 (Chen et al. Table 2)",
          lambda e: [Comparison(f"{m}: gain corrupted > gain clean", e.gain("mean_corruption_accuracy", m),
                                e.gain("corruption_clean_accuracy", m)) for m in ("vit", "mixer")]),
    Claim("noise_gain", "SAM's gain grows with label noise",
          "ResNet-32, CIFAR-10, 80% noise: SAM 77.9 vs SGD 26.2 (Foret et al.)", _noise),
)


def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    """``claims.json``: for each claim, the paper's numbers, ours (mean +- std, n), the tests and a verdict."""
    evidence = Evidence(results)
    return {"suite": results.get("suite"), "alpha": ALPHA, "rule": RULE,
            "claims": [_judge(claim, evidence) for claim in CLAIMS]}


def _judge(claim: Claim, evidence: Evidence) -> dict[str, Any]:
    out: dict[str, Any] = {"id": claim.id, "claim": claim.statement, "paper": claim.paper}
    try:
        tests = [c.result() for c in claim.comparisons(evidence)]
    except Missing as e:
        return out | {"verdict": "not measured", "why": f"the suite has no {e}", "tests": []}
    verdicts = [t["verdict"] for t in tests]
    if claim.matches_or_beats:
        (t,) = tests
        lower = t["a"]["mean"] < t["b"]["mean"]
        verdict = t["verdict"] if t["verdict"] == "contradicted" or t["p"] is None else \
            "inconclusive" if lower else "holds"
    elif "contradicted" in verdicts:
        verdict = "contradicted"
    else:
        verdict = "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"
    return out | {"verdict": verdict, "tests": tests, "ours": "; ".join(_ours(t) for t in tests)}


def _ours(test: dict[str, Any]) -> str:
    a, b = test["a"], test["b"]
    p = "" if test["p"] is None else f", p = {test['p']:.3g}"
    return f"{test['compare']}: {_pm(a)} vs {_pm(b)}{p}"


def _pm(s: dict[str, float]) -> str:
    return f"{s['mean']:.4g} +- {s['std']:.2g} (n={s['n']})"


def _summary(values: list[float]) -> dict[str, float]:
    finite = all(map(math.isfinite, values))
    return {"mean": statistics.fmean(values) if values else math.nan,
            "std": (statistics.stdev(values) if finite else math.nan) if len(values) > 1 else 0.0, "n": len(values)}


def _describe(labels: dict[str, str]) -> str:
    return ", ".join(f"{a}={v}" for a, v in labels.items()) or "any cell"
