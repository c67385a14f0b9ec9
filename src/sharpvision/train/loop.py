"""The training loop: read it top to bottom in :func:`_train`, one epoch in :func:`train_one_epoch`.

Everything a step does lives in :mod:`sharpvision.train.step`; data comes as an iterable of (x, y)
batches, so a device-resident loader or a compiled model slots in without touching this file.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from sharpvision import data as svdata
from sharpvision import models
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.hessian import hessian_eigenvalues
from sharpvision.config import Config, ConfigError
from sharpvision.evaluate import evaluate
from sharpvision.optim import SAM, build_optimizer, build_scheduler
from sharpvision.train import checkpoint as ckpt
from sharpvision.train import distributed
from sharpvision.train.flops import passes_in_steps, peak_flops, train_flops_per_image
from sharpvision.train.logging import MetricLogger
from sharpvision.train.rundir import RunDir
from sharpvision.train.step import StepFn, make_step


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclass
class Runtime:
    """Where and how tensors run, decided once from the recipe (and, for the last three fields, the model)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool = False
    flops_per_image: float = 0.0  # model FLOPs of one training forward + backward (see train.flops)
    peak_flops: float | None = None  # the device's peak FLOP/s at this precision; None: no MFU

    @classmethod
    def from_config(cls, cfg: Config) -> Runtime:
        name = cfg.train.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' asked for, but torch sees no CUDA device; use 'auto' or 'cpu'")
        precision = cfg.train.precision
        if precision == "auto":
            precision = "bf16" if name == "cuda" else "fp32"
        return cls(torch.device(name), torch.bfloat16 if precision == "bf16" else None)

    def prepare(self, cfg: Config, model: nn.Module, example: torch.Tensor) -> nn.Module:
        """Memory format, FLOP count and peak for ``model``; returns the model in its training memory format.

        channels_last (NHWC) speeds up convolutions on tensor cores, so by default it is on for CNNs on CUDA.
        """
        wanted = cfg.train.channels_last
        if wanted is None:
            wanted = self.device.type == "cuda" and sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1
        self.channels_last = bool(wanted)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.flops_per_image = train_flops_per_image(model, self.to_device(example))
        precision = "fp32" if self.amp_dtype is None else "bf16"
        self.peak_flops = peak_flops(self.device, precision, cfg.train.peak_tflops)
        return model

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch on the device, in the model's memory format."""
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: Config, bundle: svdata.DataBundle) -> nn.Module:
    """The recipe's model for the data's classes, channels and size; a rejected argument is a ConfigError."""
    clash = sorted({"drop_rate", "drop_path_rate", "num_classes", "img_size", "in_chans"} & set(cfg.model.kwargs))
    if clash:
        raise ConfigError(f"model.kwargs: {', '.join(clash)} must not be set here; use model.drop_rate / "
                          "model.drop_path_rate (the data decides classes, channels and size)")
    # drop rates only when asked for, so timm models without stochastic depth (vgg, densenet) still build
    drops = {k: v for k, v in (("drop_rate", cfg.model.drop_rate), ("drop_path_rate", cfg.model.drop_path_rate)) if v}
    try:
        return models.create(cfg.model.name, num_classes=bundle.num_classes, img_size=bundle.img_size,
                             in_chans=bundle.in_chans, **drops, **cfg.model.kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:  # timm checks arguments with asserts
        raise ConfigError(f"model: {cfg.model.name!r} rejects its arguments ({type(e).__name__}: {e}); check "
                          "model.kwargs, model.drop_rate and model.drop_path_rate") from None


def train(cfg: Config, out_dir: str | Path, resume: bool = False, stop_after_epoch: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir``; returns the summary (also written to ``summary.json``).

    ``resume`` continues from the newest checkpoint exactly (weights, optimizer, schedule, EMA, RNG states,
    position in the epoch). ``stop_after_epoch`` ends this call early, as a preemption would. Under torchrun every
    worker calls this; rank 0 writes the run directory.
    """
    rt = Runtime.from_config(cfg)
    d = distributed.setup(rt.device.type)
    if rt.device.type == "cuda":
        rt.device = torch.device("cuda", d.local_rank)
    summary = _train(cfg, RunDir.open(out_dir, cfg, resume, writes=d.main), resume, stop_after_epoch,
                     progress and d.main, rt, d)
    distributed.shutdown(d)  # only after success: on an error torchrun stops the other workers
    return summary


@dataclass
class Session:
    """What every step of a run uses, built once by :func:`_train`."""

    cfg: Config
    rt: Runtime
    dist: distributed.Dist
    model: nn.Module  # the plain model (evaluation, EMA, checkpoints); ``step`` may run a DDP / compiled wrapper
    step: StepFn
    scheduler: Any
    ema: AveragedModel | None
    mixup: Any
    logger: MetricLogger
    steps_per_epoch: int
    checkpoint: Callable[[dict[str, Any]], None]  # saves the run with this loop state (a collective under DDP)
    progress: bool


def _train(cfg: Config, run: RunDir, resume: bool, stop_after_epoch: int | None, progress: bool, rt: Runtime,
           d: distributed.Dist) -> dict[str, Any]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    bundle = svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing)
    model = build_model(cfg, bundle).to(rt.device)
    model = rt.prepare(cfg, model, torch.zeros(2, bundle.in_chans, bundle.img_size, bundle.img_size))
    if d.rank:  # the weights are rank 0's (DDP broadcasts them); dropout and augmentation draws differ per worker
        seed_everything(distributed.rank_seed(cfg.seed, d.rank))
    optimizer = build_optimizer(model, cfg.optim, cfg.schedule.min_lr_ratio, fused=rt.device.type == "cuda")
    steps_per_epoch = _steps_per_epoch(len(bundle.train), cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
           if cfg.train.ema_decay else None)
    # soft (mixup) targets carry their own smoothing, set in the data bundle
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.0 if bundle.mixup else cfg.train.label_smoothing)
    ddp = (DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
           if d.active else None)
    # the compiled module shares the model's parameters; evaluation and checkpoints use the model itself
    forward = torch.compile(ddp or model, mode=cfg.train.compile_mode) if cfg.train.compile else ddp or model
    sharpness, m = distributed.sharpness_plan(cfg.optim.m if cfg.optim.sam else None, cfg.data.batch_size, d,
                                              ddp.no_sync if ddp else nullcontext)
    step_fn = make_step(forward, optimizer, loss_fn, cfg.optim.clip_grad_norm, rt.autocast, sharpness=sharpness,
                        sam_every=cfg.optim.sam_every, step_index=lambda: scheduler.last_epoch)  # restored on resume

    state = {"epoch": 0, "step": 0, "epoch_step": 0, "partial": None, "train_time_s": 0.0, "wall_time_s": 0.0,
             "train_images": 0, "train_flops": 0.0}
    if resume and run.has_checkpoint:
        state = run.restore(model, optimizer, scheduler, ema, d.rank)

    def checkpoint(loop_state: dict[str, Any]) -> None:
        rng = distributed.gather(d, ckpt.rng_state())  # every worker's streams, so each resumes its own
        if d.main:
            run.save(model, optimizer, scheduler, ema, loop_state, rng)

    logger = MetricLogger(run.path, completed_epochs=state["epoch"], step=state["step"], enabled=d.main)
    s = Session(cfg, rt, d, model, step_fn, scheduler, ema, bundle.mixup, logger, steps_per_epoch, checkpoint,
                progress)
    sharp_every = cfg.train.sharpness_every
    sharp_data = (sample_batches(bundle.train_plain, min(cfg.train.sharpness_sample, len(bundle.train_plain)),
                                 cfg.data.eval_batch_size, seed=cfg.seed, device=rt.device) if sharp_every else None)
    loaders = svdata.Loaders.build(bundle, cfg.data, cfg.seed, rt.device, d.rank, d.world)  # on the GPU if it pays
    if progress:
        print(f"{d.world} worker(s), batch {cfg.data.batch_size} ({cfg.data.batch_size // d.world} per worker)"
              + (f", SAM perturbation per m={m} examples" if cfg.optim.sam else ""), flush=True)
    last = {}
    try:
        for epoch in range(state["epoch"], cfg.schedule.epochs):
            t0 = time.perf_counter() - (state["partial"] or {}).get("elapsed", 0.0)  # a resumed epoch's time so far
            stats = train_one_epoch(s, epoch, loaders.train_for_epoch(epoch, state["epoch_step"]), state)
            record = {"epoch": epoch, **stats, **({"sam_m": m} if cfg.optim.sam else {})}
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.schedule.epochs:
                record |= _prefixed("test_", _evaluate(model, loaders.test, rt, d))
                if loaders.val is not None:
                    record |= _prefixed("val_", _evaluate(model, loaders.val, rt, d))
                if ema is not None:
                    record |= _prefixed("ema_test_", _evaluate(ema.module, loaders.test, rt, d))
            if sharp_every and ((epoch + 1) % sharp_every == 0 or epoch + 1 == cfg.schedule.epochs):
                # cheap: a loose tolerance on a fixed sample; eval mode, own RNG, so training is unaffected
                record["lambda_max"] = hessian_eigenvalues(model, nn.functional.cross_entropy, sharp_data,
                                                           tol=1e-2, seed=cfg.seed)["eigenvalues"][0]
            _refuse_to_save_divergence(record, model, epoch)
            state |= {"epoch": epoch + 1, "epoch_step": 0, "partial": None}
            state["wall_time_s"] += time.perf_counter() - t0
            record["wall_time_s"] = state["wall_time_s"]  # since the first step: time-to-accuracy curves
            logger.log(record, state["step"], prefix="epoch/")
            checkpoint(state)
            last = record
            if progress:
                print(_epoch_line(record, cfg.schedule.epochs), flush=True)
            if stop_after_epoch is not None and state["epoch"] >= stop_after_epoch:
                break
    finally:
        logger.close()
    if state["epoch"] < cfg.schedule.epochs:
        return {"stopped_at_epoch": state["epoch"], "run_dir": str(run.path)}
    summary = _summary(cfg, model, optimizer, rt, d, m, state, last or run.last_epoch_record())
    if d.main:
        run.write_summary(summary)
    return summary


def train_one_epoch(s: Session, epoch: int, loader: Any, state: dict[str, Any]) -> dict[str, float]:
    """One pass over ``loader`` (from ``state['epoch_step']`` on, after a resume inside the epoch).

    Sums live on the device and are read, summed over the workers, once per ``log_every`` steps; every
    ``train.checkpoint_every`` steps the run is checkpointed with its place in the epoch and the sums so far.
    """
    s.model.train()
    cfg, rt, dev = s.cfg, s.rt, s.rt.device
    start, partial = state["epoch_step"], state["partial"] or {}
    sums = torch.zeros(2, device=dev, dtype=torch.float64)  # loss * n, correct (a resumed epoch's on rank 0)
    seen = 0
    if s.dist.main and partial:
        sums += torch.tensor([partial["loss_sum"], partial["correct"]], dtype=torch.float64, device=dev)
        seen = partial["seen"]

    def totals() -> tuple[float, float, float]:  # loss sum, correct, examples: the epoch so far, all workers
        loss_sum, correct, n = distributed.sum_all(s.dist, torch.cat([sums, sums.new_tensor([seen])])).tolist()
        return loss_sum, correct, n

    t0, epoch_first, done_before = time.perf_counter(), state["step"] - start, partial.get("elapsed", 0.0)
    bar = tqdm(total=s.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
               leave=False, disable=None if s.progress else True)  # None: on only when stderr is a terminal
    every = cfg.train.checkpoint_every
    for i, (x, y) in enumerate(loader, start=start):
        if i >= s.steps_per_epoch:
            break
        x, y = rt.to_device(x), y.to(dev, non_blocking=True)
        hard = y
        if s.mixup is not None:
            x, y = s.mixup(x, y)
        loss, logits = s.step(x, y)
        s.scheduler.step()
        if s.ema is not None:
            s.ema.update_parameters(s.model)
        sums[0] += loss.double() * hard.numel()
        sums[1] += (logits.argmax(1) == hard).sum()
        seen += hard.numel()
        state["step"] += 1
        bar.update()
        last = i + 1 == s.steps_per_epoch
        if state["step"] % cfg.train.log_every == 0 or last:
            loss_sum, correct, n = totals()
            mean_loss = _finite_or_raise(loss_sum / n, epoch, state["step"])
            speed = _speed(s, epoch_first, state["step"] - epoch_first, n, time.perf_counter() - t0 + done_before)
            bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{correct / n:.3f}", img_s=f"{speed['images_per_s']:.0f}",
                            **({"mfu": f"{speed['mfu']:.1%}"} if speed["mfu"] is not None else {}))
            s.logger.log({"epoch": epoch, "loss": mean_loss, "lr": s.scheduler.get_last_lr()[0], **_numbers(speed)},
                         state["step"], prefix="train/")
        if every and state["step"] % every == 0 and not last:  # the epoch's end has its own checkpoint
            loss_sum, correct, n = totals()
            s.checkpoint(state | {"epoch_step": i + 1, "partial": {
                "loss_sum": loss_sum, "correct": int(correct), "seen": int(n),
                "elapsed": time.perf_counter() - t0 + done_before}})
    bar.close()
    elapsed = time.perf_counter() - t0 + done_before
    loss_sum, correct, n = totals()
    speed = _speed(s, epoch_first, state["step"] - epoch_first, n, elapsed)
    state["train_time_s"] += elapsed
    state["train_images"] += int(n)
    state["train_flops"] += speed["tflops_per_s"] * 1e12 * elapsed
    return {"train_loss": loss_sum / n, "train_accuracy": correct / n, "lr": s.scheduler.get_last_lr()[0],
            "train_time_s": elapsed, **_numbers(speed)}


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
    """images/s, model TFLOP/s (every pass a step runs, see train.flops; all workers) and MFU (None without a
    known peak)."""
    passes = passes_in_steps(first_step, steps, s.cfg.optim.sam, s.cfg.optim.sam_every)
    flops_per_s = s.rt.flops_per_image * s.cfg.data.batch_size * passes / max(seconds, 1e-9)
    return {"images_per_s": images / max(seconds, 1e-9), "tflops_per_s": flops_per_s / 1e12,
            "mfu": flops_per_s / (s.rt.peak_flops * s.dist.world) if s.rt.peak_flops else None}


def _numbers(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def _steps_per_epoch(n_train: int, cfg: Config) -> int:
    steps = n_train // cfg.data.batch_size  # the train loader drops the last partial batch
    if steps == 0:
        raise ValueError(f"data.batch_size: {cfg.data.batch_size} is larger than the training set "
                         f"({n_train} examples); lower it or raise data.fraction / data.subset_train")
    return min(steps, cfg.train.max_steps_per_epoch or steps)


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
    return "  ".join(parts)


def _summary(cfg: Config, model: nn.Module, optimizer: Any, rt: Runtime, d: distributed.Dist, m: int | None,
             state: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    base = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    opt_name = type(base).__name__
    if isinstance(optimizer, SAM):
        kind = {"sam": "ASAM" if cfg.optim.adaptive else "SAM", "gsam": "GSAM", "looksam": "LookSAM"}
        rho = f"rho={cfg.optim.rho}" + (f"->{cfg.optim.rho_min}" if cfg.optim.rho_min is not None else "")
        alpha = f", alpha={optimizer.alpha}" if hasattr(optimizer, "alpha") else ""
        opt_name = f"{kind[cfg.optim.variant]}({opt_name}, {rho}{alpha})"
        opt_name += f" every {cfg.optim.sam_every} steps" if cfg.optim.sam_every > 1 else ""
    peak = rt.peak_flops * d.world if rt.peak_flops else None
    return {
        "name": cfg.name,
        "model": cfg.model.name,
        "optimizer": opt_name,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": state["epoch"],
        "steps": state["step"],
        **{k: v for k, v in last.items() if k.startswith(("test_", "val_", "ema_test_"))},
        "train_loss": last["train_loss"],
        "train_accuracy": last["train_accuracy"],
        "images_per_s": state["train_images"] / max(state["train_time_s"], 1e-9),
        "flops_per_image": rt.flops_per_image,  # one training forward + backward
        "tflops_per_s": state["train_flops"] / max(state["train_time_s"], 1e-9) / 1e12,
        "mfu": state["train_flops"] / max(state["train_time_s"], 1e-9) / peak if peak else None,
        "wall_time_s": state["wall_time_s"],
        "workers": d.world,
        "batch_size": cfg.data.batch_size,
        **({"sam_m": m} if isinstance(optimizer, SAM) else {}),
        "device": device_name(rt.device) + (f" x {d.world}" if d.world > 1 else ""),
        "precision": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "fp32",
        "torch": str(torch.__version__),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text())


__all__ = ["Runtime", "TrainingDiverged", "build_model", "read_summary", "train", "train_one_epoch"]
