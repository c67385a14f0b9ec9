"""The training loop. :func:`train` reads top to bottom: build, restore, for each epoch: train it, evaluate,
checkpoint; :func:`train_one_epoch`: for each batch: step, log, checkpoint when asked.

What a step does lives in :mod:`sharpvision.train.step`, what a run is built from in
:mod:`sharpvision.train.session`, the position a checkpoint saves in :mod:`sharpvision.train.state`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sharpvision import checkpoint as ckpt
from sharpvision import data as svdata
from sharpvision.analysis.hessian import hessian_eigenvalues
from sharpvision.config import Config
from sharpvision.errors import SharpvisionError
from sharpvision.evaluate import evaluate
from sharpvision.evaluate.knn import knn_accuracy
from sharpvision.flops import passes_in_steps
from sharpvision.optim import SAM
from sharpvision.runtime import Runtime, device_name, threads
from sharpvision.train import distributed
from sharpvision.train.adversarial import describe as describe_adv
from sharpvision.train.rundir import RunDir
from sharpvision.train.session import Session, build_session
from sharpvision.train.state import EpochTally


class TrainingDiverged(SharpvisionError, RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def train(cfg: Config, out_dir: str | Path, resume: bool = False, stop_after_epoch: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir``; returns the summary (also written to ``summary.json``).

    ``resume`` continues from the newest checkpoint exactly (weights, optimizer, schedule, EMA, RNG states,
    position in the epoch). ``stop_after_epoch`` ends this call early, as a preemption would. Under torchrun every
    worker calls this; rank 0 writes the run directory.
    """
    rt = Runtime.from_config(cfg)
    d = distributed.setup(rt.device.type, cfg.train.dist_timeout_s)
    if rt.device.type == "cuda":
        rt.device = torch.device("cuda", d.local_rank)
    with threads(cfg.train.threads):
        created = _first_missing(Path(out_dir))
        try:
            s = build_session(cfg, RunDir.open(out_dir, cfg, resume, writes=d.main), resume, progress and d.main, rt,
                              d)
        except SharpvisionError:  # bad input found while building (a source that does not fit, ...): leave no trace
            if created is not None and d.main:
                shutil.rmtree(created, ignore_errors=True)
            raise
        _announce(s)
        try:
            for epoch in range(s.state.epoch, cfg.schedule.epochs):
                t0 = time.perf_counter() - s.state.resumed_elapsed  # a resumed epoch's time so far
                record = {"epoch": epoch, **train_one_epoch(s, epoch), **({"sam_m": s.m} if cfg.optim.sam else {})}
                record |= measure(s, epoch) | matched_loss(s, epoch, record["train_loss"])
                _refuse_to_save_divergence(record, s.model, epoch)
                s.state.end_epoch(time.perf_counter() - t0)
                record["wall_time_s"] = s.state.wall_time_s  # since the first step: time-to-accuracy curves
                s.logger.log(record, s.state.step, prefix="epoch/")
                s.checkpoint(s.state)
                s.last = record
                if s.progress:
                    print(_epoch_line(record, cfg.schedule.epochs), flush=True)
                if stop_after_epoch is not None and s.state.epoch >= stop_after_epoch:
                    break
        finally:
            s.logger.close()
        summary = _finish(s)
    distributed.shutdown(d)  # only after success: on an error torchrun stops the other workers
    return summary


def train_one_epoch(s: Session, epoch: int) -> dict[str, float]:
    """One pass over the epoch's batches (from ``s.state.epoch_step`` on, after a resume inside the epoch).

    Sums stay on the device and are read, over all workers, once per ``train.log_every`` steps; every
    ``train.checkpoint_every`` steps the run is checkpointed with its place in the epoch and the sums so far.
    """
    s.model.train()
    start, every = s.state.epoch_step, s.cfg.train.checkpoint_every
    tally = EpochTally(s.dist, s.rt.device, s.state.step - start, s.state.partial)
    bar = tqdm(total=s.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{s.cfg.schedule.epochs}",
               leave=False, disable=None if s.progress else True)  # None: on only when stderr is a terminal
    for i, (x, y) in enumerate(s.loaders.train_for_epoch(epoch, start), start=start):
        if i >= s.steps_per_epoch:
            break
        tally.add(*_step(s, x, y))
        s.state.step += 1
        bar.update()
        last = i + 1 == s.steps_per_epoch
        if s.state.step % s.cfg.train.log_every == 0 or last:
            _log_progress(s, tally, bar, epoch)
        if every and s.state.step % every == 0 and not last:  # the epoch's end has its own checkpoint
            s.checkpoint(s.state.mid_epoch(i + 1, tally.snapshot()))
    bar.close()
    elapsed = tally.elapsed()
    loss_sum, correct, n = tally.totals()
    speed = _speed(s, tally.first_step, s.state.step - tally.first_step, n, elapsed)
    s.state.train_time_s += elapsed
    s.state.train_images += int(n)
    s.state.train_flops += speed["tflops_per_s"] * 1e12 * elapsed
    return {"train_loss": loss_sum / n, "train_accuracy": correct / n, "lr": s.scheduler.get_last_lr()[0],
            "train_time_s": elapsed, **_numbers(speed)}


def measure(s: Session, epoch: int) -> dict[str, float]:
    """What an epoch's record holds besides training: test (val, EMA) loss and accuracy when due, lambda_max when
    asked (a loose tolerance on a fixed sample, in eval mode with its own RNG: training is unaffected)."""
    out: dict[str, float] = {}
    final = epoch + 1 == s.cfg.schedule.epochs
    if not s.task.evaluable:  # no classifier (sharpvision.tasks): its figure is the kNN accuracy of its features
        if (epoch + 1) % s.cfg.train.eval_every == 0 or final:
            out |= _knn(s)
        return out
    if (epoch + 1) % s.cfg.train.eval_every == 0 or final:
        out |= _prefixed("test_", _evaluate(s.model, s.loaders.test, s.rt, s.dist))
        if s.loaders.val is not None:
            out |= _prefixed("val_", _evaluate(s.model, s.loaders.val, s.rt, s.dist))
        if s.ema is not None:
            out |= _prefixed("ema_test_", _evaluate(s.ema.module, s.loaders.test, s.rt, s.dist))
    every = s.cfg.train.lambda_max_every
    if every and ((epoch + 1) % every == 0 or final):
        out["lambda_max"] = _lambda_max(s)
    return out


def matched_loss(s: Session, epoch: int, train_loss: float) -> dict[str, float]:
    """lambda_max at matched training loss: once, at the first epoch whose mean training loss is below
    ``train.matched_loss``, by the same estimator as ``lambda_max``; that epoch's weights are kept in
    ``run/matched/`` for a later analysis. Runs compared there are at one loss level, not one at 1e-3 and one at
    0.3 (near-zero cross-entropy flattens the Hessian, so at the end lambda_max measures the loss level)."""
    level = s.cfg.train.matched_loss
    if level is None or s.state.matched_epoch is not None or not train_loss < level:
        return {}
    s.state.matched_epoch = epoch
    if s.dist.main:
        ckpt.save(s.run.path / "matched", s.state.step, s.model.state_dict(), None, {"loop": s.state.to_dict()},
                  {"epoch": epoch + 1, "model": s.cfg.model.name, "train_loss": train_loss, "matched_loss": level,
                   "config": s.cfg.to_dict()}, keep=1)
    return {"lambda_max_matched": _lambda_max(s), "matched_epoch": epoch}


def _lambda_max(s: Session) -> float:
    """The training loop's lambda_max: a loose tolerance on the fixed sample, in eval mode with its own RNG."""
    return hessian_eigenvalues(s.model, nn.functional.cross_entropy, s.lambda_max_data, tol=1e-2,
                               seed=s.cfg.seed)["eigenvalues"][0]


def _knn(s: Session) -> dict[str, float]:
    """A contrastive run's test (and val) figure: kNN accuracy of its features against the training set's, each
    worker scoring its share of the queries against the whole bank."""
    bank = svdata.eval_loader(s.loaders.bundle.train_plain, s.cfg.data)
    out = {}
    for name, loader in (("test", s.loaders.test), ("val", s.loaders.val)):
        if loader is not None:
            r = knn_accuracy(s.model, bank, loader, s.cfg.contrastive.knn_k, s.rt.device, s.loaders.bundle.num_classes)
            correct, n = distributed.sum_all(s.dist, torch.tensor([r["correct"], r["n"]], dtype=torch.float64,
                                                                   device=s.rt.device)).tolist()
            out[f"{name}_knn_accuracy"] = correct / n
    return out


def _step(s: Session, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; returns the loss, the logits and the hard labels (before mixup)."""
    x, y = s.rt.to_device(x), y.to(s.rt.device, non_blocking=True)
    y = s.task.targets(x, y)  # class labels; a contrastive run's: each view's positive
    hard = y
    if s.mixup is not None:
        x, y = s.mixup(x, y)
    loss, logits = s.step(x, y)
    s.scheduler.step()
    if s.ema is not None:
        s.ema.update_parameters(s.model)
    return loss, logits, hard


def _log_progress(s: Session, tally: EpochTally, bar: Any, epoch: int) -> None:
    loss_sum, correct, n = tally.totals()
    mean_loss = _finite_or_raise(loss_sum / n, epoch, s.state.step)
    speed = _speed(s, tally.first_step, s.state.step - tally.first_step, n, tally.elapsed())
    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{correct / n:.3f}", img_s=f"{speed['images_per_s']:.0f}",
                    **({"mfu": f"{speed['mfu']:.1%}"} if speed["mfu"] is not None else {}))
    s.logger.log({"epoch": epoch, "loss": mean_loss, "lr": s.scheduler.get_last_lr()[0], **_numbers(speed)},
                 s.state.step, prefix="train/")


def _announce(s: Session) -> None:
    if s.progress:
        batch = s.cfg.data.batch_size
        print(f"{s.dist.world} worker(s), batch {batch} ({batch // s.dist.world} per worker)"
              + (f", SAM perturbation per m={s.m} examples" if s.cfg.optim.sam else ""), flush=True)
        if s.cfg.adv.method != "none":
            print(f"adversarial training on {describe_adv(s.cfg.adv)}: the train loss and accuracy are on the "
                  "attacked inputs, the test figures on clean ones", flush=True)


def _finish(s: Session) -> dict[str, Any]:
    """The summary of a finished run (written by rank 0), or where a stopped one can resume."""
    if s.state.epoch < s.cfg.schedule.epochs:
        return {"stopped_at_epoch": s.state.epoch, "run_dir": str(s.run.path)}
    summary = _summary(s, s.last or s.run.last_epoch_record())
    if s.dist.main:
        s.run.write_summary(summary)
    return summary


def _evaluate(model: nn.Module, loader: Any, rt: Runtime, d: distributed.Dist) -> dict[str, float]:
    """Loss and accuracy over the whole set: each worker evaluates its share with rank 0's buffers; sums are added."""
    distributed.broadcast_buffers(d, model)
    local = evaluate(model, loader, rt.device, rt.autocast)
    if d.world == 1:
        return local
    n = local["n"]
    loss_sum, correct, n = distributed.sum_all(d, torch.tensor([local["loss"] * n, local["accuracy"] * n, n],
                                                               dtype=torch.float64, device=rt.device)).tolist()
    return {"loss": loss_sum / n, "accuracy": round(correct) / n, "n": int(n)}


def _speed(s: Session, first_step: int, steps: int, images: float, seconds: float) -> dict[str, Any]:
    """images/s, model TFLOP/s (every pass a step runs, see sharpvision.flops; all workers) and MFU (None without
    a known peak)."""
    passes = passes_in_steps(first_step, steps, s.cfg.optim.sam, s.cfg.optim.sam_every)
    flops_per_s = s.rt.flops_per_image * s.cfg.data.batch_size * passes / max(seconds, 1e-9)
    return {"images_per_s": images / max(seconds, 1e-9), "tflops_per_s": flops_per_s / 1e12,
            "mfu": flops_per_s / (s.rt.peak_flops * s.dist.world) if s.rt.peak_flops else None}


def _numbers(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def _finite_or_raise(value: float, epoch: int, step: int) -> float:
    if not math.isfinite(value):
        raise TrainingDiverged(f"the training loss became {value} at epoch {epoch + 1}, step {step}; the run stops "
                               "and keeps its last good checkpoint (lower optim.lr or optim.rho, or enable "
                               "optim.clip_grad_norm)")
    return value


def _refuse_to_save_divergence(record: dict[str, Any], model: nn.Module, epoch: int) -> None:
    """A checkpoint must be good: no NaN/inf weights (one host sync per epoch) and no non-finite eval loss."""
    norms = torch._foreach_norm([p.detach().float() for p in model.parameters()])
    bad = [k for k in ("test_loss", "val_loss") if k in record and not math.isfinite(record[k])]
    if bad or not bool(torch.stack([n.to(norms[0].device) for n in norms]).isfinite().all()):
        what = f"{bad[0]} is {record[bad[0]]}" if bad else "the weights hold NaN or inf"
        raise TrainingDiverged(f"after epoch {epoch + 1} {what}; the run stops without checkpointing this epoch "
                               "and keeps its last good checkpoint (lower optim.lr or optim.rho, or enable "
                               "optim.clip_grad_norm)")


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items() if k != "n"}


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch'] + 1}/{epochs}", f"train_loss {r['train_loss']:.4f}",
             f"train_acc {r['train_accuracy']:.4f}", f"{r['images_per_s']:.0f} img/s"]
    parts += [f"MFU {r['mfu']:.1%}"] if "mfu" in r else []
    parts += [f"{k} {v:.4f}" for k, v in r.items() if k.endswith("accuracy") and k != "train_accuracy"]
    parts += [f"lambda_max {r['lambda_max']:.4g}"] if "lambda_max" in r else []
    parts += [f"lambda_max at matched loss {r['lambda_max_matched']:.4g}"] if "lambda_max_matched" in r else []
    return "  ".join(parts)


def _optimizer_name(cfg: Config, optimizer: Any) -> str:
    """``AdamW``, or ``SAM(AdamW, rho=0.05)``, ``GSAM(SGD, rho=0.1->0.01, alpha=0.4) every 2 steps``, ..."""
    if not isinstance(optimizer, SAM):
        return type(optimizer).__name__
    kind = {"sam": "ASAM" if cfg.optim.adaptive else "SAM", "gsam": "GSAM", "looksam": "LookSAM"}
    rho = f"rho={cfg.optim.rho}" + (f"->{cfg.optim.rho_min}" if cfg.optim.rho_min is not None else "")
    alpha = f", alpha={optimizer.alpha}" if hasattr(optimizer, "alpha") else ""
    name = f"{kind[cfg.optim.variant]}({type(optimizer.base_optimizer).__name__}, {rho}{alpha})"
    return name + (f" every {cfg.optim.sam_every} steps" if cfg.optim.sam_every > 1 else "")


def _summary(s: Session, last: dict[str, Any]) -> dict[str, Any]:
    cfg, rt, d, state = s.cfg, s.rt, s.dist, s.state
    peak = rt.peak_flops * d.world if rt.peak_flops else None
    flops_per_s = state.train_flops / max(state.train_time_s, 1e-9)
    return {
        "name": cfg.name,
        "model": cfg.model.name,
        "optimizer": _optimizer_name(cfg, s.optimizer),
        **({"adversarial": describe_adv(cfg.adv)} if cfg.adv.method != "none" else {}),  # train_* are on its inputs
        **s.task.record(cfg, s.model, s.run.source),  # a fine-tune's mode, trainable parameters and source
        "params": sum(p.numel() for p in s.model.parameters()),
        "epochs": state.epoch,
        "steps": state.step,
        **{k: v for k, v in last.items() if k.startswith(("test_", "val_", "ema_test_"))},
        "train_loss": last["train_loss"],
        "train_accuracy": last["train_accuracy"],
        **({"lambda_max": last["lambda_max"]} if "lambda_max" in last else {}),  # train.lambda_max_every, last epoch
        **({"matched_epoch": state.matched_epoch} if cfg.train.matched_loss is not None else {}),
        "num_classes": s.loaders.bundle.num_classes,
        "images_per_s": state.train_images / max(state.train_time_s, 1e-9),
        "flops_per_image": rt.flops_per_image,  # one training forward + backward
        "tflops_per_s": flops_per_s / 1e12,
        "mfu": flops_per_s / peak if peak else None,
        "wall_time_s": state.wall_time_s,
        "workers": d.world,
        "batch_size": cfg.data.batch_size,
        **({"sam_m": s.m} if isinstance(s.optimizer, SAM) else {}),
        "device": device_name(rt.device) + (f" x {d.world}" if d.world > 1 else ""),
        "precision": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "fp32",
        "torch": str(torch.__version__),
    }


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what opening the run directory creates)."""
    missing = None
    for folder in (path.absolute(), *path.absolute().parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text())


__all__ = ["TrainingDiverged", "matched_loss", "measure", "read_summary", "train", "train_one_epoch"]
