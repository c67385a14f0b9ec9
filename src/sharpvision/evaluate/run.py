"""Evaluate a run directory or a checkpoint file on its test set: accuracy, and under corruptions, MNIST-C or attack,
each stage writing its JSON and figure (what ``sharpvision eval`` and the robustness benchmarks call)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from sharpvision import data as svdata
from sharpvision.evaluate import corruptions, mnist_c, plots
from sharpvision.evaluate.accuracy import evaluate
from sharpvision.evaluate.adversarial import (
    AttackError,
    autoattack_accuracy,
    check_attack,
    robust_accuracy,
    to_pixels,
)
from sharpvision.runs import Run, open_run


class Loaded(Run):
    """A run opened for evaluation (:func:`sharpvision.runs.open_run`), with its test set as batches."""

    def test_batches(self, subset: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, its first ``subset`` examples when given (read once, reused by every attack)."""
        test = self.bundle.test
        if subset is not None:
            if subset < 1:
                raise AttackError(f"--subset must be >= 1, got {subset}")
            test = torch.utils.data.Subset(test, range(min(subset, len(test))))
        return list(svdata.eval_loader(test, self.cfg.data))


def load(target: str | Path, ema: bool = False, overrides: list[str] | None = None) -> Loaded:
    """The model of ``target`` (a run directory or a checkpoint folder) with its own recipe, on its device."""
    run = open_run(target, ema, overrides or (), purpose="evaluate")
    return Loaded(**{f.name: getattr(run, f.name) for f in dataclasses.fields(run)})


def check_images(run: Loaded, corruption: bool = False, mnist: bool = False) -> None:
    """Whether the run's images suit the suites asked for (a corruption table for their size; MNIST-C's 28 px
    grey), checked once the run is loaded and before any stage runs."""
    if corruption:
        corruptions.table_for(run.bundle.img_size)
    if mnist:
        mnist_c.check_size(run.bundle.in_chans, run.bundle.img_size)


def evaluate_run(target: str | Path, ema: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """Test loss and accuracy of ``target`` (a run directory or a checkpoint folder) with its own recipe."""
    run = load(target, ema, overrides)
    metrics = evaluate(run.model, svdata.eval_loader(run.bundle.test, run.cfg.data), run.rt.device, run.rt.autocast)
    return {"checkpoint": str(run.saved.path), "model": run.cfg.model.name, "epoch": run.epoch, "ema": ema,
            "test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"], "n": metrics["n"]}


def attack_run(run: Loaded, attack: str, eps: list[float], out: Path | None = None, norm: str = "linf",
               steps: int = 10, restarts: int = 1, subset: int | None = None, seed: int = 0,
               command: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Robust test accuracy of ``run`` at each eps (pixel units; 0 is added: the clean accuracy), written to
    ``out`` (default RUN/eval) as ``attack_<attack>_<norm>.json`` and an accuracy-vs-eps figure beside it; a
    progress bar on a terminal with ``progress``."""
    check_attack(attack, norm, eps, steps, restarts)
    eps = sorted({0.0, *map(float, eps)})
    kwargs = dict(mean=run.bundle.mean, std=run.bundle.std, norm=norm, device=run.rt.device, seed=seed,
                  progress=progress)
    start = time.perf_counter()
    if attack == "autoattack":
        result = autoattack_accuracy(run.model, run.test_batches(subset), eps, **kwargs)
    else:
        result = robust_accuracy(run.model, run.test_batches(subset), eps, attack=attack, steps=steps,
                                 restarts=restarts, **kwargs)
    result = run.header(command) | result | {"accuracy": {str(e): a for e, a in result["accuracy"].items()},
                                             "seconds": time.perf_counter() - start}
    out = Path(out) if out else run.run_dir / "eval"
    stem = f"attack_{attack}_{norm}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["figure"] = str(plots.accuracy_vs_eps(result, out / f"{stem}.png"))
    return result


def corruption_run(run: Loaded, names: str | list[str] | None = "all", severities: list[int] | None = None,
                   out: Path | None = None, subset: int | None = None, seed: int = 0, baseline: Loaded | None = None,
                   write: Path | None = None, command: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Test accuracy of ``run`` on every corruption x severity (the -C suite for its image size), written to
    ``out`` (default RUN/eval) as ``corruptions.json`` and a heatmap. With ``baseline`` (another run, evaluated on
    the same images, corruptions and seeds) also mCE and relative mCE against it, 100 = the baseline's; with
    ``write`` also the corrupted test images in the CIFAR-10-C layout. A progress bar on a terminal with
    ``progress``."""
    names = corruptions.resolve_names(names)
    severities = corruptions.check_severities(severities or corruptions.SEVERITIES)
    batches = run.test_batches(subset)
    measure = dict(names=names, severities=severities, seed=seed)
    start = time.perf_counter()
    result = corruptions.corruption_accuracy(run.model, batches, run.bundle.mean, run.bundle.std,
                                             device=run.rt.device, autocast=run.rt.autocast, progress=progress,
                                             **measure)
    result = run.header(command) | result | {"seconds": time.perf_counter() - start}
    if baseline is not None:
        base = corruptions.corruption_accuracy(baseline.model, baseline.test_batches(subset), baseline.bundle.mean,
                                               baseline.bundle.std, device=baseline.rt.device,
                                               autocast=baseline.rt.autocast, progress=progress, **measure)
        if base["n"] != result["n"] or base["table"] != result["table"]:
            raise corruptions.CorruptionError(f"--baseline {baseline.saved.path}: its test set ({base['n']} images, "
                                              f"table {base['table']}) is not the run's ({result['n']}, "
                                              f"{result['table']})")
        result["baseline"] = {"checkpoint": str(baseline.saved.path), "model": baseline.cfg.model.name,
                              "clean_accuracy": base["clean_accuracy"],
                              "mean_corruption_accuracy": base["mean_corruption_accuracy"],
                              "mce": corruptions.mce(result["errors"], base["errors"])}
        try:
            result["baseline"]["relative_mce"] = corruptions.relative_mce(result["errors"], result["clean_error"],
                                                                          base["errors"], base["clean_error"])
        except corruptions.CorruptionError as e:  # undefined for this baseline; the rest of the result stands
            result["baseline"] |= {"relative_mce": None, "relative_mce_undefined": str(e)}
    out = Path(out) if out else run.run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "corruptions.json").write_text(json.dumps(result, indent=2) + "\n")
    result["figure"] = str(plots.corruption_heatmap(result, out / "corruptions.png"))
    if write is not None:
        images = torch.cat([to_pixels(x, run.bundle.mean, run.bundle.std) for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        result["written"] = str(corruptions.write_corrupted(images, labels, write, names, severities, seed=seed,
                                                            table=result["table"]))
    return result


def mnist_c_run(run: Loaded, names: str | list[str] | None = "all", out: Path | None = None,
                subset: int | None = None, seed: int = 0, command: str | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Test accuracy of ``run`` on each MNIST-C corruption (28 px grey images only), written to ``out`` (default
    RUN/eval) as ``mnist_c.json`` with a bar chart beside it; a progress bar on a terminal with ``progress``."""
    names = mnist_c.resolve(names)
    check_images(run, mnist=True)
    start = time.perf_counter()
    result = mnist_c.mnist_c_accuracy(run.model, run.test_batches(subset), run.bundle.mean, run.bundle.std, names,
                                      device=run.rt.device, seed=seed, autocast=run.rt.autocast, progress=progress)
    result = run.header(command) | result | {"seconds": time.perf_counter() - start}
    out = Path(out) if out else run.run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mnist_c.json").write_text(json.dumps(result, indent=2) + "\n")
    result["figure"] = str(plots.mnist_c_bars(result, out / "mnist_c.png"))
    return result
