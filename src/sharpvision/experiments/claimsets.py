"""The claim sets a suite can name (``claims:`` in its YAML): the claims its report tests, and the check, made when
the suite loads, that the suite has the cells those claims read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sharpvision.experiments import ladder
from sharpvision.experiments.claims import CLAIMS, Claim, evaluate

if TYPE_CHECKING:
    from sharpvision.experiments.suite import Suite


@dataclass(frozen=True)
class ClaimSet:
    claims: tuple[Claim, ...]
    check: Callable[[Suite], str | None]  # what the suite lacks for these claims, or None


CLAIM_SETS: dict[str, ClaimSet] = {
    "paper": ClaimSet(CLAIMS, lambda suite: None),  # a paper suite may measure any subset: the rest is "not measured"
    "ladder": ClaimSet(ladder.LADDER, ladder.check),
}


def evaluate_suite(results: dict[str, Any], claims: str = "paper") -> dict[str, Any]:
    """``claims.json`` of a suite's results under its claim set."""
    return evaluate(results, CLAIM_SETS[claims].claims) | {"claim_set": claims}
