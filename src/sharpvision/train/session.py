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
from sharpvision.analysis.core import Batches, sample_batches
from sharpvision.config import Config, ConfigError
from sharpvision.optim import build_optimizer, build_scheduler
from sharpvision.runtime import Runtime, seed_everything
from sharpvision.tasks import Task, task_of
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
    task: Task  # what the run trains: its targets, what it measures and records (sharpvision.tasks)
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
    """Data, model (rank 0's weights everywhere), optimizer, schedule, EMA, step; restored when resuming. The
    run's task (sharpvision.tasks) builds the data and the model and starts it (a fine-tune's source weights)."""
    seed_everything(cfg.seed)
    task = task_of(cfg)
    bundle = task.build_data(cfg)
    model = task.build_model(cfg, bundle)
    source = task.start(cfg, model, fresh=not (resume and run.has_checkpoint))  # a resumed run has its own weights
    if source is not None:
        run.source = source
    model = model.to(rt.device)
    model = rt.prepare(cfg, model, torch.zeros(2, bundle.in_chans, bundle.img_size, bundle.img_size))
    if d.rank:  # the weights are rank 0's (DDP broadcasts them); dropout and augmentation draws differ per worker
        seed_everything(distributed.rank_seed(cfg.seed, d.rank))
    optimizer = build_optimizer(model, cfg.optim, cfg.schedule.min_lr_ratio, fused=rt.device.type == "cuda")
    steps_per_epoch = _steps_per_epoch(len(bundle.train), cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
           if cfg.train.ema_decay else None)
    step, m = _step_fn(cfg, task, model, optimizer, scheduler, bundle, rt, d)
    state = LoopState()
    if resume and run.has_checkpoint:
        state = LoopState.from_dict(run.restore(model, optimizer, scheduler, ema, d.rank))
    logger = MetricLogger(run.path, completed_epochs=state.epoch, step=state.step, enabled=d.main)
    lambda_max_data = (sample_batches(bundle.train_plain, min(cfg.train.lambda_max_sample, len(bundle.train_plain)),
                                      cfg.data.eval_batch_size, seed=cfg.seed, device=rt.device)
                       if cfg.train.lambda_max_every or cfg.train.matched_loss else None)
    loaders = svdata.Loaders.build(bundle, cfg.data, cfg.seed, rt.device, d.rank, d.world)  # on the GPU if it pays
    return Session(cfg, task, rt, d, run, model, optimizer, scheduler, ema, step, m, bundle.mixup, loaders, logger,
                   steps_per_epoch, state, lambda_max_data, progress)


def _step_fn(cfg: Config, task: Task, model: nn.Module, optimizer: Any, scheduler: Any, bundle: svdata.DataBundle,
             rt: Runtime, d: distributed.Dist) -> tuple[StepFn, int]:
    """The training step (SAM's two passes or one, after an attack under ``adv``), through DDP and torch.compile
    when asked; and m."""
    if d.main:
        for note in task.notes(cfg):  # settings of the recipe the task leaves out, said once
            print(note, file=sys.stderr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=task.label_smoothing(cfg, bundle.mixup is not None))
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


def _steps_per_epoch(n_train: int, cfg: Config) -> int:
    steps = n_train // cfg.data.batch_size  # the train loader drops the last partial batch
    if steps == 0:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} is larger than the training set "
                          f"({n_train} examples); lower it or raise data.fraction / data.subset_train")
    return min(steps, cfg.train.max_steps_per_epoch or steps)
