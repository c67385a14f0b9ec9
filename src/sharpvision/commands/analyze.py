"""``sharpvision analyze``: the pieces named by ``--what``, each target planned before any work, a short table per
run and the side-by-side comparison.

The measuring, the files and the resuming are the library's (:mod:`sharpvision.analysis.run`); this module only
holds what the command adds: every target is checked (pieces, sizes, files already there) before the first piece
of any runs, so a mistake about the last target costs no work on the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sharpvision import checkpoint as ckpt
from sharpvision import models
from sharpvision.analysis import run as analysis


def main(args: argparse.Namespace, command: str) -> int:
    """Run the ``analyze`` subcommand's parsed flags; ``command`` is the invocation, recorded in ``--compare``'s
    JSON."""
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(analysis.Settings)}
    settings["keep_graph"] = settings["keep_graph"] or None  # the flag's absence: the automatic choice
    what = _pieces(args.what)
    analysis.check_request(what, args.tol)  # what needs no checkpoint is checked before any is loaded
    plans = []
    for target in args.targets:
        subject = analysis.load_subject(target)
        pieces = [w for w in what if w != "attention" or args.what != "all" or models.family(
            subject.cfg.model.name) == "vit"]  # "all" skips attention for models without it; asking for it errs
        run_dir = ckpt.resolve(target).parent.parent  # runs/<name>/checkpoints/step_N -> runs/<name>
        out = Path(args.out) / (subject.name if len(args.targets) > 1 else "") if args.out else run_dir / "analysis"
        plans.append(analysis.plan(subject, pieces, out, reuse=args.reuse, overwrite=args.overwrite, **settings))
    by_run = {}
    for p in plans:
        try:
            results = analysis.execute(p)
        except KeyboardInterrupt:
            print(f"interrupted: the pieces finished are in {p.out_dir}; the same command resumes from them",
                  file=sys.stderr)
            return 130
        by_run[p.subject.name] = results
        print(f"\n{p.subject.name} ({p.subject.cfg.model.name}, epoch {p.subject.epoch}): results in {p.out_dir}")
        for name, value in analysis.summary_rows(results):
            print(f"  {name:<28} {value}")
    if args.compare:
        for path in analysis.compare(by_run, Path(args.compare), command=command):
            print(f"wrote {path}")
    return 0


def _pieces(what: str | None) -> list[str]:
    """``--what``: absent, the first look; ``all``, every piece; else the names given, comma-separated."""
    if what is None:
        return list(analysis.FIRST_LOOK)
    if what.strip() == "all":
        return list(analysis.PIECES)
    return [w.strip() for w in what.split(",") if w.strip()]
