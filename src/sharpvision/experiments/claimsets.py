"""The claim sets a suite can name (``claims:`` in its YAML): the claims its report tests, and the check, made when
the suite loads, that the suite has the cells those claims read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sharpvision.experiments import ladder
from sharpvision.experiments.claims import CLAIMS, Claim, evaluate

if TYPE_CHECKING:
    from sharpvision.experiments.suite import Cell, Suite


@dataclass(frozen=True)
class ClaimSet:
    claims: tuple[Claim, ...]
    check: Callable[[Suite], str | None]  # what the suite lacks for these claims, or None
    waiting: Callable[[Suite, list[Cell]], str | None] = lambda suite, cells: None  # cells that may not run yet


CLAIM_SETS: dict[str, ClaimSet] = {
    "paper": ClaimSet(CLAIMS, lambda suite: None),  # a paper suite may measure any subset: the rest is "not measured"
    "ladder": ClaimSet(ladder.LADDER, ladder.check, ladder.waiting),
}


def evaluate_suite(results: dict[str, Any], claims: str = "paper", previous: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """``claims.json`` of a suite's results under its claim set.

    ``previous``: the suite's earlier ``claims.json``. Where it was judged by another rule, each claim keeps the
    verdict it had then (``reanalysed``), so a re-analysis with a fixed instrument shows what changed and why;
    a verdict already carried from an earlier rule stays as it was first recorded."""
    out = evaluate(results, CLAIM_SETS[claims].claims) | {"claim_set": claims}
    if previous and previous.get("rule") != out["rule"]:
        before = {c["id"]: c for c in previous.get("claims", [])}
        for claim in out["claims"]:
            old = before.get(claim["id"])
            if old is not None:
                claim["reanalysed"] = old.get("reanalysed") or {"verdict": old["verdict"],
                                                                 "rule": previous.get("rule")}
    elif previous:
        carried = {c["id"]: c["reanalysed"] for c in previous.get("claims", []) if "reanalysed" in c}
        for claim in out["claims"]:
            if claim["id"] in carried:
                claim["reanalysed"] = carried[claim["id"]]
    return out
