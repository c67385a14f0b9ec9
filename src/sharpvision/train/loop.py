"""The training loop: read it top to bottom in :func:`train`, one epoch in :func:`train_one_epoch`.

Everything a step does lives in :mod:`sharpvision.train.step`; data comes as an iterable of (x, y)
batches, so a device-resident loader or a compiled model slots in without touching this file.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from sharpvision import data as svdata
from sharpvision import models
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.hessian import hessian_eigenvalues
from sharpvision.config import Config, ConfigError
from sharpvision.evaluate import evaluate
from sharpvision.optim import SAM, build_optimizer, build_scheduler
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
    except TypeError as e:
        raise ConfigError(f"model: {cfg.model.name!r} rejects its arguments ({e}); check model.kwargs, "
                          "model.drop_rate and model.drop_path_rate") from None


def train(cfg: Config, out_dir: str | Path, resume: bool = False, stop_after_epoch: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir``; returns the summary (also written to ``summary.json``).

    ``resume`` continues from ``checkpoints/last.pt`` exactly (weights, optimizer, schedule, EMA,
    RNG states, epoch). ``stop_after_epoch`` ends this call early, as a preemption would.
    """
    run = RunDir.open(out_dir, cfg, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    rt = Runtime.from_config(cfg)
    seed_everything(cfg.seed)
    bundle = svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing)
    model = build_model(cfg, bundle).to(rt.device)
    model = rt.prepare(cfg, model, torch.zeros(2, bundle.in_chans, bundle.img_size, bundle.img_size))
    optimizer = build_optimizer(model, cfg.optim, cfg.schedule.min_lr_ratio, fused=rt.device.type == "cuda")
    steps_per_epoch = _steps_per_epoch(len(bundle.train), cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
           if cfg.train.ema_decay else None)
    # soft (mixup) targets carry their own smoothing, set in the data bundle
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.0 if bundle.mixup else cfg.train.label_smoothing)
    # the compiled module shares the model's parameters; evaluation and checkpoints use the model itself
    forward = torch.compile(model, mode=cfg.train.compile_mode) if cfg.train.compile else model
    step_fn = make_step(forward, optimizer, loss_fn, cfg.optim.clip_grad_norm, rt.autocast,
                        sam_every=cfg.optim.sam_every, step_index=lambda: scheduler.last_epoch)  # restored on resume

    state = {"epoch": 0, "step": 0, "train_time_s": 0.0, "wall_time_s": 0.0, "train_images": 0, "train_flops": 0.0}
    if resume and run.checkpoint.exists():
        state = {"train_flops": 0.0} | run.restore(model, optimizer, scheduler, ema)
    logger = MetricLogger(run.path, completed_epochs=state["epoch"], step=state["step"])
    sharp_every = cfg.train.sharpness_every
    sharp_data = (sample_batches(bundle.train_plain, min(cfg.train.sharpness_sample, len(bundle.train_plain)),
                                 cfg.data.eval_batch_size, seed=cfg.seed, device=rt.device) if sharp_every else None)
    loaders = svdata.Loaders.build(bundle, cfg.data, cfg.seed, rt.device)  # on the device when it fits and pays
    last = {}
    try:
        for epoch in range(state["epoch"], cfg.schedule.epochs):
            t0 = time.perf_counter()
            stats = train_one_epoch(model, step_fn, scheduler, ema, loaders.train_for_epoch(epoch), bundle.mixup, rt,
                                    cfg, epoch, state, steps_per_epoch, logger, progress)
            record = {"epoch": epoch, **stats}
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.schedule.epochs:
                record |= _prefixed("test_", evaluate(model, loaders.test, rt.device, rt.autocast))
                if loaders.val is not None:
                    record |= _prefixed("val_", evaluate(model, loaders.val, rt.device, rt.autocast))
                if ema is not None:
                    record |= _prefixed("ema_test_", evaluate(ema.module, loaders.test, rt.device, rt.autocast))
            if sharp_every and ((epoch + 1) % sharp_every == 0 or epoch + 1 == cfg.schedule.epochs):
                # cheap: a loose tolerance on a fixed sample; eval mode, own RNG, so training is unaffected
                record["lambda_max"] = hessian_eigenvalues(model, nn.functional.cross_entropy, sharp_data,
                                                           tol=1e-2, seed=cfg.seed)["eigenvalues"][0]
            _refuse_to_save_divergence(record, model, epoch)
            state["epoch"] = epoch + 1
            state["wall_time_s"] += time.perf_counter() - t0
            record["wall_time_s"] = state["wall_time_s"]  # since the first step: time-to-accuracy curves
            logger.log(record, state["step"], prefix="epoch/")
            run.save(model, optimizer, scheduler, ema, state)
            last = record
            if progress:
                print(_epoch_line(record, cfg.schedule.epochs), flush=True)
            if stop_after_epoch is not None and state["epoch"] >= stop_after_epoch:
                break
    finally:
        logger.close()
    if state["epoch"] < cfg.schedule.epochs:
        return {"stopped_at_epoch": state["epoch"], "run_dir": str(run.path)}
    summary = _summary(cfg, model, optimizer, rt, state, last or run.last_epoch_record())
    run.write_summary(summary)
    return summary


def train_one_epoch(model: nn.Module, step_fn: StepFn, scheduler: Any, ema: AveragedModel | None, loader: Any,
                    mixup: Any, rt: Runtime, cfg: Config, epoch: int, state: dict[str, Any], steps: int,
                    logger: MetricLogger, progress: bool) -> dict[str, float]:
    """One pass over ``loader``; sums live on the device and are read once per ``log_every`` steps."""
    model.train()
    dev = rt.device
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.int64)
    seen, t0, first_step = 0, time.perf_counter(), state["step"]
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}", leave=False,
               disable=None if progress else True)  # None: on only when stderr is a terminal
    for i, (x, y) in enumerate(loader):
        if i >= steps:
            break
        x, y = rt.to_device(x), y.to(dev, non_blocking=True)
        hard = y
        if mixup is not None:
            x, y = mixup(x, y)
        loss, logits = step_fn(x, y)
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.double() * hard.numel()
        correct += (logits.argmax(1) == hard).sum()
        seen += hard.numel()
        state["step"] += 1
        bar.update()
        if state["step"] % cfg.train.log_every == 0 or i + 1 == steps:
            mean_loss = _finite_or_raise(loss_sum.item() / seen, epoch, state["step"])
            speed = _speed(rt, cfg, first_step, i + 1, seen, time.perf_counter() - t0)
            lr = scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{correct.item() / seen:.3f}",
                            img_s=f"{speed['images_per_s']:.0f}",
                            **({"mfu": f"{speed['mfu']:.1%}"} if speed["mfu"] is not None else {}))
            logger.log({"epoch": epoch, "loss": mean_loss, "lr": lr, **_numbers(speed)}, state["step"],
                       prefix="train/")
    bar.close()
    elapsed = time.perf_counter() - t0
    speed = _speed(rt, cfg, first_step, state["step"] - first_step, seen, elapsed)
    state["train_time_s"] += elapsed
    state["train_images"] += seen
    state["train_flops"] += speed["tflops_per_s"] * 1e12 * elapsed
    return {"train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen,
            "lr": scheduler.get_last_lr()[0], "train_time_s": elapsed, **_numbers(speed)}


def _speed(rt: Runtime, cfg: Config, first_step: int, steps: int, images: int, seconds: float) -> dict[str, Any]:
    """images/s, model TFLOP/s (every pass a step runs, see train.flops) and MFU (None without a known peak)."""
    passes = passes_in_steps(first_step, steps, cfg.optim.sam, cfg.optim.sam_every)
    flops_per_s = rt.flops_per_image * cfg.data.batch_size * passes / max(seconds, 1e-9)
    return {"images_per_s": images / max(seconds, 1e-9), "tflops_per_s": flops_per_s / 1e12,
            "mfu": flops_per_s / rt.peak_flops if rt.peak_flops else None}


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


def _summary(cfg: Config, model: nn.Module, optimizer: Any, rt: Runtime, state: dict[str, Any],
             last: dict[str, Any]) -> dict[str, Any]:
    base = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    opt_name = type(base).__name__
    if isinstance(optimizer, SAM):
        kind = {"sam": "ASAM" if cfg.optim.adaptive else "SAM", "gsam": "GSAM", "looksam": "LookSAM"}
        rho = f"rho={cfg.optim.rho}" + (f"->{cfg.optim.rho_min}" if cfg.optim.rho_min is not None else "")
        alpha = f", alpha={optimizer.alpha}" if hasattr(optimizer, "alpha") else ""
        opt_name = f"{kind[cfg.optim.variant]}({opt_name}, {rho}{alpha})"
        opt_name += f" every {cfg.optim.sam_every} steps" if cfg.optim.sam_every > 1 else ""
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
        "mfu": state["train_flops"] / max(state["train_time_s"], 1e-9) / rt.peak_flops if rt.peak_flops else None,
        "wall_time_s": state["wall_time_s"],
        "device": device_name(rt.device),
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
