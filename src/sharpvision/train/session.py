"""Everything one training run uses, built once from its recipe: data, model, optimizer, step, logs, position.

:func:`build_session` is the "build, restore" half of training; :mod:`sharpvision.train.loop` is the other half.
The order of the random draws here (model init, per-rank seeds, restored RNG states, then the loaders) is part of
what makes a resumed run equal an uninterrupted one.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sharpvision import checkpoint as ckpt
from sharpvision import data as svdata
from sharpvision import models
from sharpvision.analysis.core import Batches, sample_batches
from sharpvision.config import Config, ConfigError
from sharpvision.models.transfer import TransferError, fit_source, freeze_backbone, read_source
from sharpvision.optim import build_optimizer, build_scheduler
from sharpvision.runtime import Runtime, seed_everything
from sharpvision.train import distributed
from sharpvision.train.adversarial import pgd_adversary
from sharpvision.train.logging import MetricLogger
from sharpvision.train.rundir import RunDir
from sharpvision.train.state import LoopState
from sharpvision.train.step import StepFn, make_step


@dataclass
class Session:
    """A run being trained: what every step, evaluation and checkpoint uses."""

    cfg: Config
    rt: Runtime
    dist: distributed.Dist
    run: RunDir
    model: nn.Module  # the plain model (evaluation, EMA, checkpoints); ``step`` may run a DDP / compiled wrapper
    optimizer: Any
    scheduler: Any
    ema: AveragedModel | None
    step: StepFn
    m: int  # examples per SAM perturbation (m-sharpness)
    mixup: Any
    loaders: svdata.Loaders
    logger: MetricLogger
    steps_per_epoch: int
    state: LoopState
    lambda_max_data: Batches | None  # the fixed sample for lambda_max during training (train.lambda_max_every)
    progress: bool
    last: dict[str, Any] = field(default_factory=dict)  # the newest epoch record

    def checkpoint(self, state: LoopState) -> None:
        """Save the run at ``state``; a collective under DDP (every worker's RNG streams are gathered)."""
        rng = distributed.gather(self.dist, ckpt.rng_state())  # each worker resumes its own streams
        if self.dist.main:
            self.run.save(self.model, self.optimizer, self.scheduler, self.ema, state.to_dict(), rng)


def build_session(cfg: Config, run: RunDir, resume: bool, progress: bool, rt: Runtime,
                  d: distributed.Dist) -> Session:
    """Data, model (rank 0's weights everywhere), optimizer, schedule, EMA, step; restored when resuming."""
    seed_everything(cfg.seed)
    bundle = svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing,
                                   contrastive=cfg.contrastive if cfg.task == "contrastive" else None)
    model = models.from_config(cfg, bundle)
    if cfg.finetune.source and not (resume and run.has_checkpoint):  # a resumed run's weights come from its own
        run.source = start_from_source(cfg, model)
    if cfg.finetune.mode == "linear":
        freeze_backbone(model)
    model = model.to(rt.device)
    model = rt.prepare(cfg, model, torch.zeros(2, bundle.in_chans, bundle.img_size, bundle.img_size))
    if d.rank:  # the weights are rank 0's (DDP broadcasts them); dropout and augmentation draws differ per worker
        seed_everything(distributed.rank_seed(cfg.seed, d.rank))
    optimizer = build_optimizer(model, cfg.optim, cfg.schedule.min_lr_ratio, fused=rt.device.type == "cuda")
    steps_per_epoch = _steps_per_epoch(len(bundle.train), cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
           if cfg.train.ema_decay else None)
    step, m = _step_fn(cfg, model, optimizer, scheduler, bundle, rt, d)
    state = LoopState()
    if resume and run.has_checkpoint:
        state = LoopState.from_dict(run.restore(model, optimizer, scheduler, ema, d.rank))
    logger = MetricLogger(run.path, completed_epochs=state.epoch, step=state.step, enabled=d.main)
    lambda_max_data = (sample_batches(bundle.train_plain, min(cfg.train.lambda_max_sample, len(bundle.train_plain)),
                                      cfg.data.eval_batch_size, seed=cfg.seed, device=rt.device)
                       if cfg.train.lambda_max_every or cfg.train.matched_loss else None)
    loaders = svdata.Loaders.build(bundle, cfg.data, cfg.seed, rt.device, d.rank, d.world)  # on the GPU if it pays
    return Session(cfg, rt, d, run, model, optimizer, scheduler, ema, step, m, bundle.mixup, loaders, logger,
                   steps_per_epoch, state, lambda_max_data, progress)


def start_from_source(cfg: Config, model: nn.Module) -> dict[str, Any]:
    """Load ``finetune.source`` into the freshly built model; returns what the manifest records of it."""
    src = read_source(cfg.finetune.source, cfg.finetune.ema)
    if src.model_name is not None and src.model_name != cfg.model.name:
        raise TransferError(f"finetune.source {cfg.finetune.source}: it trained {src.model_name!r} but model.name is "
                            f"{cfg.model.name!r}; set model.name={src.model_name}")
    return {**src.info, "model": src.model_name or cfg.model.name, "adapted": fit_source(model, src, cfg.finetune)}


def _step_fn(cfg: Config, model: nn.Module, optimizer: Any, scheduler: Any, bundle: svdata.DataBundle, rt: Runtime,
             d: distributed.Dist) -> tuple[StepFn, int]:
    """The training step (SAM's two passes or one, after an attack under ``adv``), through DDP and torch.compile
    when asked; and m."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=_label_smoothing(cfg, bundle, d))
    ddp = (DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
           if d.active else None)
    # the compiled module shares the model's parameters; evaluation and checkpoints use the model itself
    forward = torch.compile(ddp or model, mode=cfg.train.compile_mode) if cfg.train.compile else ddp or model
    groups, m = distributed.perturbation_groups(cfg.optim.m if cfg.optim.sam else None, cfg.data.batch_size, d,
                                                ddp.no_sync if ddp else nullcontext)
    adversary = (pgd_adversary(model, cfg.adv, bundle.mean, bundle.std, rt.autocast)  # the plain model: see there
                 if cfg.adv.method == "pgd" else None)
    step = make_step(forward, optimizer, loss_fn, cfg.optim.clip_grad_norm, rt.autocast, groups=groups,
                     sam_every=cfg.optim.sam_every, step_index=lambda: scheduler.last_epoch,  # restored on resume
                     adversary=adversary)
    return step, m


def _label_smoothing(cfg: Config, bundle: svdata.DataBundle, d: distributed.Dist) -> float:
    """The loss's label smoothing. Soft (mixup) targets carry their own, set in the data bundle. NT-Xent has none:
    its targets are each view's other view, and smoothing would put weight on the masked (-inf) self-similarity,
    an infinite loss; a contrastive run leaves it out and says so once, so shared recipes (micro.yaml sets 0.1)
    still pre-train as written."""
    if cfg.task == "contrastive":
        if cfg.train.label_smoothing and d.main:
            print(f"note: train.label_smoothing={cfg.train.label_smoothing:g} is not applied to the contrastive "
                  "(NT-Xent) loss; it smooths class labels, which pre-training does not use", file=sys.stderr)
        return 0.0
    return 0.0 if bundle.mixup else cfg.train.label_smoothing


def _steps_per_epoch(n_train: int, cfg: Config) -> int:
    steps = n_train // cfg.data.batch_size  # the train loader drops the last partial batch
    if steps == 0:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} is larger than the training set "
                          f"({n_train} examples); lower it or raise data.fraction / data.subset_train")
    return min(steps, cfg.train.max_steps_per_epoch or steps)
