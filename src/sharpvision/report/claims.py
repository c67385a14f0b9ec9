"""The claims section of a suite report: a figure first (each comparison's effect with its 95% interval, coloured by
verdict), then the table in points, then the rule. A smoke suite's verdicts are shown grey under a banner.

The effects come from claims.json (``effect``, ``ci``, ``unit``, ``test``, ``n`` per comparison). A claims.json
written before those fields existed holds only each side's mean, std and n over seeds: there the effect is A - B in
points with Welch's interval from those summaries, and a comparison of raw NTK condition numbers (no unit to put
it in without the per-seed values) is left out of the figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sharpvision import stats
from sharpvision.report import figures as draw
from sharpvision.report.doc import Banner, Block, Figure, Heading, Table, Text, signed

SMOKE = ("Smoke test: this suite checks the machinery and its numbers mean nothing; no verdict below is a finding "
         "(all are shown grey).")
RAW = {"ntk_order"}  # old files: comparisons of raw values whose difference has no meaningful unit


def is_smoke(claims: dict[str, Any], source: dict[str, Any]) -> bool:
    """A smoke suite, as claims.json or the suite's own YAML declares it."""
    return bool(claims.get("smoke") or source.get("smoke"))


def effect(claim_id: str, test: dict[str, Any]) -> dict[str, Any] | None:
    """``{effect, ci, unit, test, n}`` of a comparison: claims.json's own fields, or (older files) A - B in points
    with Welch's 95% interval from the two sides' mean, std and n; None where there is none to give."""
    if "effect" in test:
        if test["effect"] is None:
            return None
        return {k: test.get(k) for k in ("effect", "ci", "unit", "test", "n")} | {"unit": test.get("unit", "points")}
    a, b = test.get("a") or {}, test.get("b") or {}
    if claim_id in RAW or not all(_finite(s.get(k)) for s in (a, b) for k in ("mean", "std")):
        return None
    return {"effect": 100 * (a["mean"] - b["mean"]), "ci": _welch_ci(a, b), "unit": "points", "test": "welch",
            "n": min(a["n"], b["n"])}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _welch_ci(a: dict[str, float], b: dict[str, float]) -> list[float] | None:
    """Welch-Satterthwaite 95% interval of 100 x (mean a - mean b) from each side's mean, std and n."""
    from scipy import stats
    if a["n"] < 2 or b["n"] < 2:
        return None
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    diff = 100 * (a["mean"] - b["mean"])
    if va + vb == 0:
        return [diff, diff]
    df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
    half = 100 * float(stats.t.ppf(0.975, df)) * math.sqrt(va + vb)
    return [diff - half, diff + half]


def effects(claims: dict[str, Any]) -> list[draw.Effect]:
    """Every comparison with an effect, in claim order, labelled ``claim: comparison``."""
    out = []
    for claim in claims["claims"]:
        for test in claim.get("tests", []):
            found = effect(claim["id"], test)
            if found is not None:
                ci = tuple(found["ci"]) if found.get("ci") else None
                out.append(draw.Effect(f"{claim['id']}: {test['compare']}", found["effect"], ci, found["unit"],
                                       test["verdict"], -1 if _predicts_lower(test["compare"]) else 1))
    return out


def _predicts_lower(compare: str) -> bool:
    return " < " in compare and " > " not in compare


def ours(claim: dict[str, Any]) -> str:
    """The claim's comparisons in a line each: effect [95% interval] unit, the test, n and p."""
    parts = []
    for test in claim.get("tests", []):
        found = effect(claim["id"], test)
        if found is None:
            parts.append(f"{test['compare']}: {test.get('why') or 'no effect to give'}")
            continue
        ci = f" [{signed(found['ci'][0])}, {signed(found['ci'][1])}]" if found.get("ci") else ""
        p = test.get("p")
        where = ", ".join(x for x in (found.get("test"), f"n={found['n']}" if found.get("n") is not None else "",
                                      stats.fmt_p(p) if p is not None else "") if x)
        parts.append(f"{test['compare']}: {signed(found['effect'])}{ci} {found['unit']} ({where})")
    return "; ".join(parts) or claim.get("why", "")


def blocks(claims: dict[str, Any], figures: Path, smoke: bool) -> list[Block]:
    """The claims section: banner (smoke), the effects figure, the table, the rule."""
    out: list[Block] = [Heading("Claims", id="claims-section")]
    if smoke:
        out.append(Banner(SMOKE))
    found = effects(claims)
    if found:
        path = draw.claims(found, figures / "claims.png", grey=smoke)
        out.append(Figure(path.name, "each comparison's effect A \u2212 B with its 95% interval (the claim predicts "
                                     "the shaded side of zero), coloured by the comparison's verdict"
                                     + (" (grey: a smoke test decides nothing)" if smoke else "")))
    rows = tuple((f"{c['id']}: {c['claim']}", c["paper"], ours(c), c["verdict"]) for c in claims["claims"])
    return [*out, Table(("claim", "paper", "ours: effect [95% CI]", "verdict"), rows, id="claims", badge=3,
                        grey=smoke, caption="Effects A \u2212 B in points (accuracies; lambda_max and NTK kappa as "
                                            "log ratios where claims.json says so), with 95% intervals, the test, "
                                            "the number of seeds n and p; claims.json has every number."),
            Text(f"Rule: {claims['rule']}")]
