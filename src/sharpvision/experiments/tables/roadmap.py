"""The ConvNeXt roadmap grid (suite roadmap-cpu): per step, AdamW against SAM paired by seed, each step's change
against the step it modifies, and the tests over steps fixed before the grid ran (docs/models.md, "The training
grid"). Accuracies as fractions, as the cells record them."""

from __future__ import annotations

from typing import Any

from sharpvision import stats
from sharpvision.experiments.aggregate import attack_metric
from sharpvision.experiments.tables import table

Seeds = dict[str, dict[str, float]]  # seed -> metrics
# compared per step besides test accuracy; of them, SAM's gain is tested over steps for these (and every attack)
COMPARED = ("train_accuracy", "corruption_clean_accuracy", "lambda_max", "mean_corruption_accuracy")
TESTED = ("lambda_max", "mean_corruption_accuracy")


def step_index(label: str) -> int:
    """The roadmap step of a model label of the suite (``11_gelu`` -> 11)."""
    return int(label.split("_", 1)[0])


def by_step(results: dict[str, Any]) -> dict[int, dict[str, Seeds]]:
    """Finished cells as step -> setting -> seed -> metrics."""
    out: dict[int, dict[str, Seeds]] = {}
    for cell in results["cells"].values():
        lab = cell["labels"]
        out.setdefault(step_index(lab["model"]), {}).setdefault(lab["setting"], {})[lab["seed"]] = cell["metrics"]
    return out


def sam_vs_adamw(vanilla: list[float], sam: list[float]) -> dict[str, Any]:
    """SAM against AdamW by seed: both means, the paired difference, the seeds SAM is better on, and the paired
    t-test's p (None where the differences have no spread: scipy's t would be NaN, or decided by rounding)."""
    diffs = [b - a for a, b in zip(vanilla, sam)]
    test = stats.paired(sam, vanilla)
    return {"vanilla": stats.mean_std(vanilla), "sam": stats.mean_std(sam), "sam_minus_vanilla": stats.mean_std(diffs),
            "sam_better_seeds": sum(d > 0 for d in diffs), "n": len(diffs),
            "paired_t_p": None if test["ci"] is None or test["ci"][0] == test["ci"][1] else test["p"]}


def step_row(cells: dict[str, Seeds], base: dict[str, Seeds] | None, metrics: tuple[str, ...]) -> dict[str, Any]:
    """One step: test accuracy and ``metrics`` paired by seed (AdamW, SAM, SAM's gain), and the change of test
    accuracy against its base step per setting (paired by seed: the same seed gives the same data)."""
    van, sam = cells.get("vanilla", {}), cells.get("sam", {})
    seeds = sorted(set(van) & set(sam))
    row: dict[str, Any] = {"seeds": seeds}
    for m in ("test_accuracy", *metrics) if seeds else ():
        if all(m in van[s] and m in sam[s] for s in seeds):
            row[m] = sam_vs_adamw([van[s][m] for s in seeds], [sam[s][m] for s in seeds])
    for setting, own in (("vanilla", van), ("sam", sam)) if base is not None else ():
        common = sorted(set(own) & set(base.get(setting, {})))
        if common:
            row[f"change_{setting}"] = stats.mean_std([own[s]["test_accuracy"] - base[setting][s]["test_accuracy"]
                                                       for s in common])
    return row


def _gain_test(gains: list[float]) -> dict[str, Any]:
    """The gains' mean +- std with the one-sample t-test's p against zero."""
    return stats.mean_std(gains) | {"t_p": stats.one_sample(gains)["p"]}


def tests(rows: dict[int, dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    """The pre-registered tests over steps (each step's seed mean is one observation; two-sided, alpha 0.05):
    SAM's gain across the roadmap (one-sample t), its trend along the roadmap (Spearman with the step index),
    whether the same steps help with and without SAM (Spearman of the per-step changes, and the steps whose change
    flips sign), SAM's gain in each of ``metrics``, and whether clean accuracy ranks the steps in it."""
    done = {i: r for i, r in rows.items() if "test_accuracy" in r}
    out: dict[str, Any] = {"steps": len(done)}
    if len(done) < 3:
        return out
    idx = sorted(done)
    gains = [done[i]["test_accuracy"]["sam_minus_vanilla"]["mean"] for i in idx]
    out["sam_gain"] = _gain_test(gains)
    out["gain_trend"] = stats.spearman(idx, gains)
    both = [i for i in idx if "change_vanilla" in done[i] and "change_sam" in done[i]]
    if len(both) >= 3:
        a = [done[i]["change_vanilla"]["mean"] for i in both]
        b = [done[i]["change_sam"]["mean"] for i in both]
        out["same_steps_help"] = stats.spearman(a, b) | {
            "sign_flips": [i for i, x, y in zip(both, a, b) if (x > 0) != (y > 0)]}
    for m in metrics:
        have = [i for i in idx if m in done[i]]
        if len(have) >= 3:
            out[m] = {"sam_gain": _gain_test([done[i][m]["sam_minus_vanilla"]["mean"] for i in have]),
                      "clean_ranks_it": stats.spearman([done[i]["test_accuracy"]["vanilla"]["mean"] for i in have],
                                                       [done[i][m]["vanilla"]["mean"] for i in have])}
    return out


@table("roadmap", "per step of the ConvNeXt roadmap: test accuracy and the other figures with AdamW and SAM paired by "
                  "seed, the change of test accuracy against the step it modifies, the parameters; and the tests over "
                  "steps fixed before the grid ran (one observation per step). Accuracies as fractions")
def roadmap(results: dict[str, Any]) -> dict[str, Any]:
    from sharpvision.models.roadmap import STEPS  # builds no model; kept lazy so loading a suite stays light

    names = {m for c in results["cells"].values() for m in c["metrics"]}
    attacks = tuple(m for _, m in sorted((attack_metric(m), m) for m in names if attack_metric(m)))
    cells = by_step(results)
    rows = {s.index: step_row(cells[s.index], cells.get(s.base) if s.index else None, (*COMPARED, *attacks))
            for s in STEPS if s.index in cells}
    params = {step_index(c["labels"]["model"]): int(c["metrics"]["params"]) for c in results["cells"].values()
              if "params" in c["metrics"]}
    steps = {f"{s.index:02d}": {"step": s.name + "_micro", "change": s.change, "base": f"{s.base:02d}",
                                "params": params.get(s.index), **rows[s.index]} for s in STEPS if s.index in rows}
    return {"steps": steps, "tests": tests(rows, (*TESTED, *attacks))}
