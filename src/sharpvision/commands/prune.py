"""``sharpvision prune``: a trained run cut to a smaller model, written as a run directory of its own, optionally
fine-tuned.

Units are ranked per width by how often they fire on a calibration sample of the training set (``activity``, the
measure behind Chen et al.'s active-neuron figures) or by their weights' norm (``magnitude``), and the lowest
``amount`` of every width is removed (:mod:`sharpvision.models.prune`). The cut model and its recipe come from the
``prune`` task (:mod:`sharpvision.tasks.prune`): the pruned directory is a normal run directory whose recipe records
the widths (``model.widths``), so ``eval``, ``analyze``, ``finetune`` and the library load it like any run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sharpvision import checkpoint as ckpt
from sharpvision import config as svconfig
from sharpvision import data as svdata
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.sparsity import unit_activity
from sharpvision.errors import SharpvisionError
from sharpvision.evaluate import evaluate
from sharpvision.flops import forward_flops
from sharpvision.models.prune import keep_top, magnitude_scores, prunable
from sharpvision.runs import open_run
from sharpvision.runtime import device_name
from sharpvision.tasks import PRUNE
from sharpvision.train import read_summary, train
from sharpvision.train.rundir import versions

CRITERIA = ("activity", "magnitude")


class PruneError(SharpvisionError, ValueError):
    """A pruning request that cannot be done (amount, criterion, output folder); nothing is written."""


def main(args: argparse.Namespace, command: str) -> int:
    """Run the ``prune`` subcommand's parsed flags into --out (default RUN-pruned<amount>-<by>) and print what the
    cut changed; ``command`` is the invocation, recorded in the summary."""
    default = f"{Path(args.target).resolve()}-pruned{round(100 * args.amount)}-{args.by}"
    out = Path(args.out) if args.out else Path(default)
    s = prune_run(args.target, out, args.amount, args.by, sample=args.sample, seed=args.seed,
                  finetune_epochs=args.finetune_epochs, progress=not args.quiet, command=command)
    print(f"{s['model']} pruned by {s['by']}, {100 * s['amount']:.0f}% of each hidden width: parameters "
          f"{s['params_before']:,} -> {s['params']:,}, forward FLOPs {s['flops_before'] / 1e6:.2f}M -> "
          f"{s['flops'] / 1e6:.2f}M, test accuracy {100 * s['test_accuracy_before']:.2f}% -> "
          f"{100 * s['test_accuracy']:.2f}%" + (f", {100 * s['finetune']['test_accuracy']:.2f}% after "
                                                 f"{s['finetune']['epochs']} epochs of fine-tuning"
                                                 if "finetune" in s else ""))
    print(f"wrote {out}")
    return 0


def prune_run(target: str | Path, out: str | Path, amount: float, by: str = "activity", sample: int = 1024,
              seed: int = 0, finetune_epochs: int = 0, progress: bool = False, command: str | None = None
              ) -> dict[str, Any]:
    """Prune ``amount`` (in (0, 1)) of every hidden width of ``target``'s model by ``by``; write the pruned run to
    ``out`` and, with ``finetune_epochs``, fine-tune it on its own data into ``out/finetune``. Returns the summary."""
    if not 0 < amount < 1:
        raise PruneError(f"--amount: {amount} must be in (0, 1), the share of each width's units removed")
    if by not in CRITERIA:
        raise PruneError(f"--by: {by!r} is not one of {', '.join(CRITERIA)}")
    out = Path(out)
    done = (out / "summary.json").is_file()
    if out.exists() and not (done and finetune_epochs):  # only a finished pruning's fine-tune may continue
        raise PruneError(f"--out {out}: already exists; choose another folder")
    if not done:
        _write_pruned(target, out, amount, by, sample, seed, command)
    summary = read_summary(out)
    if finetune_epochs:
        summary["finetune"] = _finetune(out, finetune_epochs, progress)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_pruned(target: str | Path, out: Path, amount: float, by: str, sample: int, seed: int,
                  command: str | None) -> None:
    run = open_run(target, purpose="prune")
    model, cfg, bundle, device = run.model, run.cfg, run.bundle, run.rt.device
    widths = prunable(model)
    if not widths:
        raise PruneError(f"{cfg.model.name}: no prunable widths (timm Mlp hidden layers or ResNet block channels)")
    start = time.perf_counter()
    magnitude = magnitude_scores(model)
    if by == "activity":
        data = sample_batches(bundle.train_plain, min(sample, len(bundle.train_plain)), cfg.data.eval_batch_size,
                              seed=seed, device=device)
        activity = unit_activity(model, data, {n: (w.act, w.unit_dim) for n, w in widths.items()})
        keep = keep_top(activity, amount, tiebreak=magnitude)
    else:
        keep = keep_top(magnitude, amount)
    pruned = PRUNE.cut(model, keep)
    seconds = time.perf_counter() - start
    new_cfg = PRUNE.recipe(cfg, pruned, keep, bundle, amount, by, out)
    example = torch.zeros(1, bundle.in_chans, bundle.img_size, bundle.img_size, device=device)
    loader = svdata.eval_loader(bundle.test, cfg.data)
    before, after = (evaluate(m, loader, device, run.rt.autocast) for m in (model, pruned))
    summary = {
        "name": new_cfg.name, "model": cfg.model.name, "pruned_from": str(run.saved.path.resolve()),
        "amount": amount, "by": by, "sample": sample if by == "activity" else None,
        "params_before": sum(p.numel() for p in model.parameters()),
        "params": sum(p.numel() for p in pruned.parameters()),
        "flops_before": forward_flops(model, example), "flops": forward_flops(pruned, example),
        "test_accuracy_before": before["accuracy"], "test_accuracy": after["accuracy"], "test_loss": after["loss"],
        "widths": {n: [len(keep[n]), w.size] for n, w in widths.items()},
        "prune_seconds": seconds, "device": device_name(device), "torch": str(torch.__version__), "command": command,
    }
    _write_dir(out, new_cfg, pruned, run.saved.manifest, summary)


def _write_dir(out: Path, cfg: svconfig.Config, model: torch.nn.Module, source: dict[str, Any],
               summary: dict[str, Any]) -> None:
    """The pruned run directory, built beside ``out`` and renamed into place: all of it or nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        svconfig.dump(cfg, tmp / "config.yaml")
        manifest = {"epoch": source.get("epoch"), "model": cfg.model.name, "world_size": 1, "versions": versions(),
                    "config": cfg.to_dict(), "pruned_from": summary["pruned_from"]}
        ckpt.save(tmp / "checkpoints", source.get("step", 0), model.state_dict(), None, {"pruned": True}, manifest,
                  keep=1)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finetune(pruned: Path, epochs: int, progress: bool) -> dict[str, Any]:
    """A short full fine-tune of the pruned model on the source's data and recipe (``pruned/finetune``)."""
    run = pruned / "finetune"
    result = train(PRUNE.finetune_recipe(pruned, epochs), run, resume=run.exists(), progress=progress)
    return {"run_dir": str(run), "epochs": epochs, "test_accuracy": result["test_accuracy"]}
