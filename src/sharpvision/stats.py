"""The project's statistics, in one place: mean +- std with n, paired and Welch t-tests with 95% intervals,
per-seed slopes, rank correlation, and how a p-value is written.

Every test returns a plain dict of finite numbers or ``None`` (never NaN or inf), so results files stay strict
JSON. Effects are differences of means ``a - b`` in the unit of the inputs; callers scale accuracies to points
(x 100) before asking.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

LEVEL = 0.95  # every interval in the project is a 95% interval


def finite(x: float | None) -> float | None:
    """``x`` as a float, or None where it is missing, NaN or infinite (strict JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else float(x)


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample std (n - 1) with n; std is None for one value, both None where a value is not finite."""
    values = [float(v) for v in values]
    if not values or not all(map(math.isfinite, values)):
        return {"mean": None, "std": None, "n": len(values)}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def _t_interval(mean: float, se: float, df: float) -> tuple[dict[str, Any], float | None]:
    """The 95% interval and the two-sided p of a t statistic ``mean / se`` with ``df`` degrees of freedom."""
    from scipy import stats
    if se == 0:  # no spread: the interval is the point; t is infinite (p = 0) unless the mean is zero too
        return {"ci": [mean, mean]}, 1.0 if mean == 0 else 0.0
    q = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    p = float(2 * stats.t.sf(abs(mean / se), df))
    return {"ci": [mean - q * se, mean + q * se], "t": mean / se, "df": df}, p


def one_sample(d: Sequence[float]) -> dict[str, Any]:
    """The mean of ``d`` with its 95% t interval and the two-sided p against zero (None for n < 2).

    A spread that is only float rounding (every value equal to within 1e-12 of their size) counts as none: scipy
    would otherwise warn of catastrophic cancellation and give a meaningless p. Without spread, p is 0 for a
    non-zero mean (t is infinite) and 1 for a zero one; a mean that is only rounding counts as zero."""
    d = [float(v) for v in d]
    n = len(d)
    out: dict[str, Any] = {"effect": None, "ci": None, "p": None, "n": n}
    if n == 0 or not all(map(math.isfinite, d)):
        return out
    mean = statistics.fmean(d)
    out["effect"] = mean
    if n < 2:
        return out
    sd, size = statistics.stdev(d), max(1.0, max(abs(v) for v in d))
    if sd <= 1e-12 * size:
        sd, mean = 0.0, 0.0 if abs(mean) <= 1e-12 * size else mean
        out["effect"] = mean
    interval, p = _t_interval(mean, sd / math.sqrt(n), n - 1)
    return out | interval | {"p": p}


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired t-test of ``a`` against ``b`` (same length, pair i is one seed): effect = mean(a - b)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} and {len(b)})")
    return one_sample([x - y for x, y in zip(a, b)]) | {"test": "paired t"}


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Welch's t-test (unequal variances) of two independent groups: effect = mean(a) - mean(b), the
    Welch-Satterthwaite interval, n = the smaller group."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    out: dict[str, Any] = {"effect": None, "ci": None, "p": None, "n": min(len(a), len(b)), "test": "welch"}
    if not a or not b or not all(map(math.isfinite, a + b)):
        return out
    out["effect"] = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, *map(abs, a + b)):
        interval, p = _t_interval(out["effect"], 0.0, 1)
        return out | interval | {"p": p}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    interval, p = _t_interval(out["effect"], se, df)
    return out | interval | {"p": p}


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of ``y`` on ``x`` (at least two distinct x)."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((xi - mx) ** 2 for xi in x)
    if sxx == 0:
        raise ValueError("a slope needs at least two distinct x values")
    return sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx


def per_seed_slopes(x: Sequence[float], ys: dict[str, Sequence[float]]) -> dict[str, Any]:
    """A trend tested over seeds: each seed's least-squares slope of its values ``ys[seed]`` on ``x``, then a
    one-sample t over the seeds' slopes (a seed's rungs share its data draw, so its slope is one observation).

    Also the line at the mean slope and intercept, and where it crosses zero (``crossing_x``), None without a
    significant trend."""
    slopes = {s: slope(x, v) for s, v in ys.items()}
    out = one_sample(list(slopes.values())) | {"test": "per-seed slope, t over seeds"}
    mx = statistics.fmean(x)
    level = statistics.fmean(statistics.fmean(v) for v in ys.values()) if ys else None
    out["intercept_at_mean_x"] = level
    out["mean_x"] = mx
    out["crossing_x"] = None
    if out["effect"] and out["p"] is not None and out["p"] < 1 - LEVEL and level is not None:
        out["crossing_x"] = mx - level / out["effect"]
        lo, hi = out["ci"]
        ends = [mx - level / s for s in (lo, hi) if s != 0 and (s > 0) == (out["effect"] > 0)]
        out["crossing_ci"] = sorted(ends) if len(ends) == 2 else None
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman's rank correlation of ``y`` with ``x`` and its two-sided p (scipy), with n; None where either is
    constant (the correlation is undefined)."""
    from scipy import stats
    r = stats.spearmanr(x, y)
    return {"spearman": finite(float(r.statistic)), "p": finite(float(r.pvalue)), "n": len(x)}


def verdict(result: dict[str, Any], alpha: float = 1 - LEVEL) -> str:
    """The project's rule for a directional comparison "a > b": holds when p < alpha with a positive effect,
    contradicted when p < alpha with a negative one, inconclusive otherwise (no p: inconclusive)."""
    p, effect = result.get("p"), result.get("effect")
    if p is None or effect is None or not p < alpha:
        return "inconclusive"
    return "holds" if effect > 0 else "contradicted"


def fmt_p(p: float | None) -> str:
    """``p = 0.031``, ``p < 0.001``, or ``n/a`` where no test applied."""
    if p is None:
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}".rstrip("0").rstrip(".")


def fmt_effect(result: dict[str, Any], digits: int = 1) -> str:
    """``+0.7 [-0.2, +1.6]``: an effect with its 95% interval (``n/a`` where none)."""
    e, ci = result.get("effect"), result.get("ci")
    if e is None:
        return "n/a"
    text = f"{e:+.{digits}f}"
    return text + (f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "")


def fmt_mean_std(s: dict[str, Any], digits: int = 1) -> str:
    """``80.4 +- 0.6 (n=3)`` from :func:`mean_std`."""
    if s.get("mean") is None:
        return "n/a"
    std = "" if s.get("std") is None else f" +- {s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f}{std} (n={s['n']})"
