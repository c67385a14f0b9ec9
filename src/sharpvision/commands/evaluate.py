"""``sharpvision eval``: the flags checked together, the stages asked for run in order, and what each prints.

The measuring and the files are the library's (:mod:`sharpvision.evaluate.run`); this module only holds what the
command adds: every stage's request is checked, then the runs' images, before the first stage starts, since each
stage writes its files when it ends and a mistake left to a later stage would come after an earlier stage's files.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sharpvision.errors import SharpvisionError
from sharpvision.evaluate import corruptions, mnist_c
from sharpvision.evaluate import run as evaluation
from sharpvision.evaluate.adversarial import check_attack


def main(args: argparse.Namespace, command: str) -> int:
    """Run the ``eval`` subcommand's parsed flags; ``command`` is the invocation, recorded in every result."""
    if args.eps is not None and args.attack is None:
        raise SharpvisionError("--eps needs --attack (fgsm, pgd or autoattack)")
    for flag in ("severities", "baseline", "write"):
        if getattr(args, flag) is not None and args.corruptions is None:
            raise SharpvisionError(f"--{flag} needs --corruptions")
    if args.attack is None and args.corruptions is None and args.mnist_c is None:
        print(json.dumps(evaluation.evaluate_run(args.target, ema=args.ema, overrides=args.overrides), indent=2))
        return 0
    eps = _floats("--eps", args.eps or "") if args.attack else []
    severities = _severities(args.severities) if args.severities else None
    _check_request(args.corruptions, severities, args.mnist_c, args.attack, eps, args.norm, args.steps,
                   args.restarts)
    run = evaluation.load(args.target, ema=args.ema, overrides=args.overrides)
    baseline = evaluation.load(args.baseline, overrides=args.overrides) if args.baseline else None
    for loaded in (run, baseline):
        if loaded is not None:
            evaluation.check_images(loaded, corruption=args.corruptions is not None, mnist=args.mnist_c is not None)
    common = dict(out=args.out, subset=args.subset, seed=args.seed, command=command, progress=True)
    if args.corruptions is not None:
        _say_corruptions(evaluation.corruption_run(run, args.corruptions, severities, baseline=baseline,
                                                   write=args.write, **common))
    if args.mnist_c is not None:
        _say_mnist_c(evaluation.mnist_c_run(run, args.mnist_c, **common))
    if args.attack is not None:
        _say_attack(evaluation.attack_run(run, args.attack, eps, norm=args.norm, steps=args.steps,
                                          restarts=args.restarts, **common))
    return 0


def _check_request(corruption_names: str | None, severities: list[int] | None, mnist_c_names: str | None,
                   attack: str | None, eps: list[float], norm: str, steps: int, restarts: int) -> None:
    """Every stage's arguments at once (None: the stage is not asked for), before any run is loaded; one-line
    errors naming the culprit."""
    if corruption_names is not None:
        corruptions.resolve_names(corruption_names)
        corruptions.check_severities(severities or corruptions.SEVERITIES)
    if mnist_c_names is not None:
        mnist_c.resolve(mnist_c_names)
    if attack is not None:
        check_attack(attack, norm, eps, steps, restarts)


def _say_corruptions(result: dict[str, Any]) -> None:
    print(f"{result['model']} (epoch {result['epoch']}), {len(result['accuracy'])} corruptions, "
          f"{result['table']} table, n={result['n']}: clean {100 * result['clean_accuracy']:.2f}%, "
          f"mean corrupted {100 * result['mean_corruption_accuracy']:.2f}%")
    if "baseline" in result:
        b = result["baseline"]
        relative = (f"{b['relative_mce']:.1f}" if b["relative_mce"] is not None
                    else f"undefined ({b['relative_mce_undefined']})")
        print(f"  against {b['model']} ({b['checkpoint']}): mCE {b['mce']:.1f}, relative mCE {relative} "
              "(100 = the baseline)")
    print(f"wrote {result['figure']} and its .json" + (f"; corrupted images in {result['written']}"
                                                      if "written" in result else ""))


def _say_mnist_c(result: dict[str, Any]) -> None:
    print(f"{result['model']} (epoch {result['epoch']}), MNIST-C, n={result['n']}: clean "
          f"{100 * result['clean_accuracy']:.2f}%, mean corrupted {100 * result['mean_corruption_accuracy']:.2f}%")
    for name, acc in result["accuracy"].items():
        print(f"  {name:<14} {100 * acc:.2f}%")
    print(f"wrote {result['figure']} and its .json")


def _say_attack(result: dict[str, Any]) -> None:
    print(f"{result['model']} (epoch {result['epoch']}), {result['attack']} {result['norm']}, n={result['n']}:")
    for e, acc in result["accuracy"].items():
        print(f"  eps {float(e):<8g} accuracy {100 * acc:.2f}%")
    print(f"wrote {result['figure']} and its .json")


def _floats(flag: str, text: str) -> list[float]:
    """A comma-separated list of numbers (e.g. --eps 0.05,0.1), one line naming the flag when it is not."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SharpvisionError(f"{flag}: {text!r} is not a comma-separated list of numbers (e.g. 0.05,0.1)") from None
    if not values:
        raise SharpvisionError(f"{flag}: give at least one value (e.g. {flag} 0.05,0.1)")
    return values


def _severities(text: str) -> list[int]:
    """--severities: whole numbers, comma-separated; '2.5' is refused, not truncated to 2."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(int(part))
        except ValueError:
            raise SharpvisionError(f"--severities: {part!r} is not a severity: they are the whole numbers 1-5, "
                                   "comma-separated (e.g. 1,3,5)") from None
    if not values:
        raise SharpvisionError("--severities: give at least one value (e.g. --severities 1,3,5)")
    return values
