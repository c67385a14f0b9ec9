"""``sharpvision`` command line: models, train, finetune, prune, eval, analyze, reproduce, report, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sharpvision import config as svconfig
from sharpvision.errors import SharpvisionError

if TYPE_CHECKING:  # the CLI imports each task's stack only when it runs
    from sharpvision.experiments import Cell, Suite


def cmd_models(args: argparse.Namespace) -> int:
    from sharpvision import models
    names = models.list_models()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {models.family(name):<8}  {models.describe(name)}")
    print(f"\n{len(names)} names; any timm model name works too (timm.list_models()).")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return _run(svconfig.load(args.recipe, args.overrides), args)  # checked before any process group exists


def _run(cfg: svconfig.Config, args: argparse.Namespace) -> int:
    """Train ``cfg`` into --out (default runs/<name>), resuming when asked or restarted; print the summary."""
    from sharpvision.train import distributed, train
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    resume = args.resume or distributed.restarted()  # torchrun --max-restarts: carry on from the last checkpoint
    summary = train(cfg, out, resume=resume, stop_after_epoch=args.stop_after_epoch, progress=not args.quiet)
    if distributed.launched_rank() == 0:  # under torchrun, one summary, from rank 0
        print(json.dumps(summary, indent=2))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from sharpvision.tasks import finetune_recipe
    return _run(finetune_recipe(args.source, args.data, args.mode, args.recipe, args.overrides), args)


# a subcommand with more to it than one library call lives in sharpvision.commands, imported only when it runs
def cmd_prune(args: argparse.Namespace) -> int:
    from sharpvision.commands import prune
    return prune.main(args, _command())


def cmd_eval(args: argparse.Namespace) -> int:
    from sharpvision.commands import evaluate
    return evaluate.main(args, _command())


def cmd_analyze(args: argparse.Namespace) -> int:
    from sharpvision.commands import analyze
    return analyze.main(args, _command())


def cmd_reproduce(args: argparse.Namespace) -> int:
    """A suite's grid of runs into one directory: resumable, shardable, aggregated into results.json."""
    from sharpvision import experiments
    suite = experiments.load_suite(args.suite)
    out = Path(args.out) if args.out else Path("runs") / "suites" / suite.name
    cells = experiments.select(suite.cells(), args.only, args.shard)
    if args.estimate and not args.dry_run:
        raise SharpvisionError("--estimate needs --dry-run")
    if args.dry_run:
        return _dry_run(suite, out, cells, args.estimate)
    from sharpvision.experiments.claimsets import CLAIM_SETS
    waiting = CLAIM_SETS[suite.claims].waiting(suite, cells)
    if waiting:
        raise SharpvisionError(f"suite {suite.name}: {waiting}")
    if args.submit:
        from sharpvision.experiments.submit import submit_cells
        submit_cells(suite, out, cells, args.submit, args.timeout_min, args.partition, args.gpus_per_node)
    else:
        experiments.run_suite(suite, out, cells)
    from sharpvision.experiments.runner import closing_line
    print(closing_line(suite, out, cells))  # from the directory now: other processes may share it
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """A suite directory (or run directories) as report.md and one self-contained report.html."""
    from sharpvision.report import write_report
    written = write_report([Path(d) for d in args.dirs], Path(args.out) if args.out else None, args.pair)
    figures = [p for p in written if p.suffix == ".png"]
    for path in written:
        if path.suffix != ".png":
            print(f"wrote {path}")
    if figures:
        print(f"wrote {len(figures)} figures in {figures[0].parent}")
    return 0


def _dry_run(suite: Suite, out: Path, cells: list[Cell], estimate: bool) -> int:
    """Each cell's state, read from the directory at once; with ``estimate`` also a training time from timed steps
    of each distinct setup (finished cells are not timed, so a resumed suite is cheap)."""
    from sharpvision import experiments
    status = {cell.key: experiments.cell_status(out / "cells" / cell.folder) for cell in cells}
    seconds, todo = {}, [c for c in cells if status[c.key] not in ("done", "running")]
    if estimate:
        from sharpvision.experiments.estimate import training_seconds
        seconds = training_seconds(suite, todo)
    for cell in cells:
        cost = (f" ~{seconds[cell.key] / 60:.1f} min" if cell.key in seconds else " -") if estimate else ""
        print(f"{cell.key:<60} {status[cell.key]:<8}{cost}".rstrip())
    states = list(status.values())
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("done", "running", "failed", "started", "todo")
                       if s in states)
    if estimate:
        from sharpvision.experiments.estimate import method
        print(f"{len(cells)} cells: {counts}; about {sum(seconds.values()) / 3600:.2f} h of training left, "
              f"{method(todo)}")
    else:
        print(f"{len(cells)} cells: {counts} (--estimate: time a few steps of each setup for a cost)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A small ViT on Fashion-MNIST with and without SAM, then the tables and one line on what they show."""
    from sharpvision.demo import run_demo
    out = Path(args.out)
    record = run_demo(args.recipe, list(args.overrides), out, args.fresh, progress=not args.quiet)
    print()
    print(record["table"])
    print()
    print(record["curves"])
    print()
    print(record["what_it_shows"])
    (out / "demo.json").write_text(json.dumps({"command": _command(), **record}, indent=2) + "\n")
    return 0


def _command() -> str:
    """This invocation as a user would type it, recorded next to the results it wrote."""
    return " ".join(["sharpvision", *sys.argv[1:]])


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _share(text: str) -> float:
    """prune --amount: a number strictly between 0 and 1 (nan and inf are refused here, before any use)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1), the share of each width's units removed")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes read as every other: one line naming the culprit and exit 2, not the usage block.
    Subcommand parsers are made of this class too (argparse builds them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sharpvision", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list model names").set_defaults(fn=cmd_models)

    t = sub.add_parser("train", help="train a recipe: sharpvision train RECIPE [--out DIR] [--resume] [key=value ...]")
    t.add_argument("recipe", help="YAML recipe, e.g. configs/fmnist/vit_sam.yaml")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.rho=0.1 data.fraction=0.25")
    t.add_argument("--out", help="run directory (default runs/<recipe name>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--stop-after-epoch", type=_positive, help="stop after this many epochs, resumable (time slices)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    t.set_defaults(fn=cmd_train)

    f = sub.add_parser("finetune", help="fine-tune or linear-probe trained weights on new data: sharpvision finetune "
                                        "SOURCE --data digits [--mode linear] [key=value ...]")
    f.add_argument("source", help="a run directory, a checkpoint folder, or a local timm weights file "
                                  "(.safetensors, or a .pth loadable with weights_only)")
    f.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.img_size=28 optim.lr=3e-4")
    f.add_argument("--data", choices=["fashion_mnist", "cifar10", "cifar100", "digits", "folder"],
                   help="the new dataset (default: the source's); a class split: data.classes=[5,6,7,8,9]")
    f.add_argument("--mode", choices=["full", "linear"], default="full",
                   help="full: every weight learns; linear: the new classifier only, on frozen features")
    f.add_argument("--recipe", help="start from this recipe instead of the source run's own")
    f.add_argument("--out", help="run directory (default runs/<source name>-ft|probe-<dataset>)")
    f.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    f.add_argument("--stop-after-epoch", type=_positive, help="stop after this many epochs, resumable")
    f.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    f.set_defaults(fn=cmd_finetune)

    pr = sub.add_parser("prune", help="cut a trained run's hidden widths (MLP units, ResNet block channels) by "
                                      "activity or magnitude into a smaller run: sharpvision prune RUN --amount 0.5")
    pr.add_argument("target", help="run directory or checkpoint folder")
    pr.add_argument("--amount", type=_share, required=True, help="share of each hidden width removed, in (0, 1)")
    pr.add_argument("--by", choices=["activity", "magnitude"], default="activity",
                    help="activity: units that fire least on a calibration sample go first; magnitude: smallest "
                         "weight norm")
    pr.add_argument("--sample", type=_positive, default=1024, help="--by activity: training examples measured")
    pr.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    pr.add_argument("--finetune-epochs", type=int, default=0, help="then fine-tune the pruned model this many "
                                                                   "epochs on its data (into OUT/finetune)")
    pr.add_argument("--out", help="the pruned run directory (default RUN-pruned<amount>-<by>)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(fn=cmd_prune)

    e = sub.add_parser("eval", help="test accuracy and loss of a run directory or checkpoint; robustness with "
                                     "--corruptions and --attack")
    e.add_argument("target", help="run directory (its newest checkpoint) or a checkpoint folder "
                                  "(runs/NAME/checkpoints/step_N)")
    e.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=/data/fmnist")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights (when the run kept them)")
    e.add_argument("--attack", choices=["fgsm", "pgd", "autoattack"],
                   help="robust accuracy under this attack at each --eps (autoattack: torchattacks' AutoAttack)")
    e.add_argument("--eps", help="attack radii in pixel units (images in [0, 1]), comma-separated, e.g. 0.05,0.1")
    e.add_argument("--norm", choices=["linf", "l2"], default="linf", help="the attack's threat model")
    e.add_argument("--steps", type=_positive, default=10, help="PGD steps (step size 2.5 * eps / steps)")
    e.add_argument("--restarts", type=_positive, default=1, help="PGD random restarts")
    e.add_argument("--subset", type=_positive, help="only the first N test images (an attack costs steps passes "
                                                    "each, the corruptions 75 passes)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random starts and random corruptions")
    e.add_argument("--corruptions", nargs="?", const="all", metavar="NAMES",
                   help="accuracy on the -C corruptions for the image size: 'all' (default), groups (noise, blur, "
                        "weather, digital) or names, comma-separated")
    e.add_argument("--mnist-c", nargs="?", const="all", metavar="NAMES",
                   help="accuracy on MNIST-C's 15 corruptions (28 px grey images): 'all' (default) or names, "
                        "comma-separated")
    e.add_argument("--severities", help="--corruptions: severities 1-5, comma-separated (default all five)")
    e.add_argument("--baseline", metavar="RUN", help="--corruptions: also mCE and relative mCE against this run")
    e.add_argument("--write", metavar="DIR", help="--corruptions: also write the corrupted test images here "
                                                  "(CIFAR-10-C layout: <name>.npy, labels.npy)")
    e.add_argument("--out", help="output folder (default RUN/eval)")
    e.set_defaults(fn=cmd_eval)

    a = sub.add_parser("analyze", help="loss geometry of runs: Hessian, trace, density, sharpness, NTK, "
                                       "landscape, flatness, sparsity, attention, norms",
                       description="Without --what, a first look: lambda_max and the trace, lambda_max per "
                                   "block, sparsity, the 1-D landscape from the trained weights to the "
                                   "initialization, weight norms. Measured on the tiny.yaml run (vit_micro, 1,024 "
                                   "images) on a quiet 2-core CPU: the first look 66 s, --what all 3.8 min "
                                   "(docs/analysis.md).")
    a.add_argument("targets", nargs="+", help="run directories or checkpoint folders")
    a.add_argument("--what", help="comma-separated pieces, or 'all' (attention only for ViTs); default: the first "
                                  "look (hessian, trace, sparsity, landscape_1d, norms)")
    a.add_argument("--sample", type=_positive, help="training examples in the fixed analysis sample (default 256, "
                                                    "or the whole training set when smaller)")
    a.add_argument("--batch-size", type=_positive, default=256)
    a.add_argument("--seed", type=int, default=0, help="seed of the sample and of the random vectors")
    a.add_argument("--repeats", type=_positive, default=1, help="lambda_max on this many sample draws (spread)")
    a.add_argument("--tol", type=float, default=1e-3, help="relative accuracy of each lambda_max, in (0, 1)")
    a.add_argument("--mode", choices=["eval", "train"], default="eval", help="model mode (BN, dropout) policy")
    a.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    a.add_argument("--ntk-n", type=_positive, help="inputs in the NTK kernel (default 256)")
    a.add_argument("--landscape-sample", type=_positive, help="examples per landscape point (default 512)")
    a.add_argument("--landscape-steps", type=_positive, default=11, help="grid points per landscape axis")
    a.add_argument("--trace-samples", type=_positive, default=60, help="at most this many Hutch++ products")
    a.add_argument("--trace-digits", type=_positive, default=2,
                   help="stop the trace's probes once its standard error allows this many significant digits")
    a.add_argument("--density-iters", type=_positive, default=50, help="Lanczos steps per SLQ run")
    a.add_argument("--density-runs", type=_positive, default=3, help="SLQ runs (random start vectors)")
    a.add_argument("--out", help="output folder (default RUN/analysis)")
    a.add_argument("--compare", help="also write side-by-side figures of all targets to this folder")
    a.add_argument("--keep-graph", action="store_true",
                   help="Hessian pieces: build the sample's gradient graph once (about 30%% faster, memory for "
                        "the whole sample's graph; default: only when the sample is one batch)")
    a.add_argument("--reuse", action="store_true",
                   help="load pieces already saved for this run and epoch, whatever their settings (a piece saved "
                        "with the same settings is always resumed)")
    a.add_argument("--overwrite", action="store_true",
                   help="replace pieces saved for another checkpoint or with other settings (refused otherwise)")
    a.set_defaults(fn=cmd_analyze)

    r = sub.add_parser("reproduce", help="run an experiment suite (a grid of runs), resumably: "
                                         "sharpvision reproduce paper-tiny")
    r.add_argument("suite", help="a suite YAML file or a shipped suite's name (configs/suites/)")
    r.add_argument("--out", help="suite directory (default runs/suites/<suite name>)")
    r.add_argument("--only", action="append", default=[], metavar="AXIS=LABEL",
                   help="run only the cells with this label, or with one of several (setting=vanilla,sam); "
                        "repeatable, each filter narrowing the last")
    r.add_argument("--shard", metavar="I/N", help="run every N-th cell from the I-th (N machines, one directory)")
    r.add_argument("--dry-run", action="store_true", help="list the cells and their state (reads the directory)")
    r.add_argument("--estimate", action="store_true", help="--dry-run: also estimate the training time left from a "
                                                           "few timed steps of each distinct setup (seconds each)")
    r.add_argument("--submit", choices=["slurm", "local"], help="one submitit job per cell (local: subprocesses)")
    r.add_argument("--timeout-min", type=_positive, default=240, help="--submit: each job's time limit")
    r.add_argument("--partition", help="--submit slurm: the partition")
    r.add_argument("--gpus-per-node", type=int, default=0, help="--submit: GPUs per job")
    r.set_defaults(fn=cmd_reproduce)

    rp = sub.add_parser("report", help="a suite directory or run directories as Markdown and one self-contained "
                                       "HTML page: sharpvision report runs/suites/paper-tiny")
    rp.add_argument("dirs", nargs="+", metavar="DIR", help="one suite directory (sharpvision reproduce --out), or "
                                                          "run directories (sharpvision train --out)")
    rp.add_argument("--out", help="output folder (default DIR/report for a suite, else ./report)")
    rp.add_argument("--pair", metavar="MODEL", help="the model label whose loss landscape and attention maps are "
                                                   "shown, vanilla vs sam (default: the first that has them)")
    rp.set_defaults(fn=cmd_report)

    d = sub.add_parser("demo", help="small ViT on Fashion-MNIST, with and without SAM, side by side (CPU minutes)")
    d.add_argument("overrides", nargs="*", help="dotted overrides applied to both runs")
    d.add_argument("--recipe", default="demo.yaml", help="a YAML file or a shipped recipe's name (default demo.yaml)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--fresh", action="store_true", help="delete earlier demo runs in --out first")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # argparse stops collecting positionals at the first --flag; key=value overrides may follow it
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("interrupted; the run's newest checkpoint is complete (resume with --resume)",
              file=sys.stderr)
        return 130
    except SharpvisionError as e:  # what the user can fix: one clear line, exit 2; anything else is a bug
        print(f"sharpvision {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
