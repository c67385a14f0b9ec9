"""``sharpvision demo``: one recipe trained with and without SAM, side by side, with what it shows and what it doesn't.

The shipped demo recipe is a regime where the base optimizer memorises (a micro ViT on 2,352 Fashion-MNIST images
with 40% of the training labels replaced): the test-accuracy curves show AdamW peaking and falling as it fits the
wrong labels, and lambda_max shows how sharp each run ends. One seed, one regime: the claims over seeds and families
are the paper-cpu suite's (docs/experiments.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sharpvision import config as svconfig

RUNS = {"AdamW": ("vit_base", False), "SAM(AdamW)": ("vit_sam", True)}


def run_demo(recipe: str, overrides: list[str], out: Path, fresh: bool, progress: bool,
             say=print) -> dict[str, Any]:
    """Train (or resume, or reuse) both runs into ``out``; returns the record written to ``out/demo.json``."""
    from sharpvision.train import RunDirError, train
    if fresh:  # only what the demo wrote, never the rest of --out
        for folder, _ in RUNS.values():
            shutil.rmtree(out / folder, ignore_errors=True)
        (out / "demo.json").unlink(missing_ok=True)
    rows = {}
    for label, (folder, sam) in RUNS.items():
        cfg = svconfig.load(recipe, [f"optim.sam={str(sam).lower()}", *overrides])
        run_dir = out / folder
        say(f"== {label}: {cfg.model.name} on {cfg.data.dataset}, {cfg.schedule.epochs} epochs -> {run_dir}"
            + (" (finished earlier: reused; --fresh retrains)" if (run_dir / "summary.json").exists() else ""))
        try:  # resume=True: continues an interrupted demo, reuses a finished one only if its recipe matches
            rows[label] = train(cfg, run_dir, resume=True, progress=progress)
        except RunDirError as e:
            raise RunDirError(f"{e} (or pass --fresh to retrain the demo)") from None
    curves = {label: accuracy_curve(out / folder) for label, (folder, _) in RUNS.items()}
    sharpness = {label: lambda_max_curve(out / folder) for label, (folder, _) in RUNS.items()}
    return {"recipe": recipe, "overrides": overrides, "table": demo_table(rows), "curves": curve_table(curves),
            "lambda_max": sharpness, "what_it_shows": what_it_shows(curves, sharpness, rows), "runs": rows,
            "test_curves": curves}


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def accuracy_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, test accuracy) of every evaluated epoch: where a run that memorises its labels peaks and falls."""
    return [(r["epoch"] + 1, r["test_accuracy"]) for r in _records(run_dir) if "train_loss" in r and
            "test_accuracy" in r]


def lambda_max_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, top Hessian eigenvalue on the recipe's fixed training sample) where the recipe measured it."""
    return [(r["epoch"] + 1, r["lambda_max"]) for r in _records(run_dir) if "train_loss" in r and "lambda_max" in r]


def curve_table(curves: dict[str, list[tuple[int, float]]]) -> str:
    """Test accuracy per evaluated epoch, side by side, and each run's best epoch against its last."""
    labels = list(curves)
    by_epoch = {label: dict(curve) for label, curve in curves.items()}
    epochs = sorted({e for curve in curves.values() for e, _ in curve})
    lines = [f"{'epoch':<8}" + "".join(f"{label:>14}" for label in labels)]
    lines += [f"{e:<8}" + "".join(f"{by_epoch[label].get(e, float('nan')):>14.4f}" for label in labels)
              for e in epochs]
    for label, curve in curves.items():
        best_epoch, best = max(curve, key=lambda point: point[1])
        lines.append(f"{label}: best test accuracy {best:.4f} at epoch {best_epoch}, last {curve[-1][1]:.4f} "
                     f"(epoch {curve[-1][0]})")
    return "\n".join(lines)


def demo_table(rows: dict[str, dict]) -> str:
    cols = [("test accuracy", "test_accuracy", "{:.4f}"), ("train accuracy", "train_accuracy", "{:.4f}"),
            ("lambda_max", "lambda_max", "{:.4g}"), ("images/s", "images_per_s", "{:.0f}"),
            ("wall time (s)", "wall_time_s", "{:.0f}")]
    cols = [c for c in cols if all(isinstance(s.get(c[1]), (int, float)) for s in rows.values())]
    lines = [f"{'':<14}" + "".join(f"{name:>16}" for name, _, _ in cols)]
    for label, s in rows.items():
        lines.append(f"{label:<14}" + "".join(f"{fmt.format(s[key]):>16}" for _, key, fmt in cols))
    any_row = next(iter(rows.values()))
    lines.append(f"model {any_row['model']} ({any_row['params']:,} params), device {any_row['device']}, "
                 f"torch {any_row['torch']}; train accuracy is on the labels trained on (noisy ones included)")
    return "\n".join(lines)


def what_it_shows(curves: dict[str, list[tuple[int, float]]], sharpness: dict[str, list[tuple[int, float]]],
                  rows: dict[str, dict]) -> str:
    """One line from the measured numbers: how far each run fell from its best epoch, and what this does not show."""
    (base, base_curve), (sam, sam_curve) = curves.items()
    drop = {label: max(a for _, a in c) - c[-1][1] for label, c in curves.items()}
    gain = sam_curve[-1][1] - base_curve[-1][1]
    lam = {label: c[-1][1] for label, c in sharpness.items() if c}
    lam_text = f"; lambda_max at the end {lam[base]:.3g} vs {lam[sam]:.3g}" if len(lam) == 2 else ""
    return (f"{base} ends {drop[base] * 100:.1f} points below its best test epoch, {sam} {drop[sam] * 100:.1f}; "
            f"{sam} ends {gain * 100:+.1f} points against {base}{lam_text}. One seed and one regime: it shows what "
            "SAM does to memorisation here, not that SAM helps on clean data or at scale (see the paper-cpu claims).")
