"""Many processes through torchrun: who am I, sums over all workers, buffers from rank 0.

``torchrun --nproc-per-node N -m sharpvision train RECIPE`` sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`setup`
then joins the process group (NCCL on CUDA, gloo on CPU). Without them everything here is a no-op for one process,
so the trainer has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import torch
import torch.distributed as dist
from torch import nn

from sharpvision.config import ConfigError
from sharpvision.train.step import PerturbationGroups


@dataclass(frozen=True)
class Dist:
    """This process's place among the workers; ``rank 0 of 1`` when not launched by torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False  # a process group is initialized (torchrun, even with one process)
    owns_group: bool = False  # :func:`setup` created it, so :func:`shutdown` destroys it

    @property
    def main(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_rank() -> int:
    """This process's rank from torchrun's environment (0 when not launched by it), before any group exists."""
    return int(os.environ["RANK"]) if launched() else 0


def restarted() -> bool:
    """Whether torchrun restarted this worker after a failure (``--max-restarts``): it should resume, not start."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def setup(device_kind: str, timeout_s: float = 1800.0) -> Dist:
    """Join the process group when launched by torchrun (reusing one the caller already made); else one process.

    ``device_kind`` ('cpu' or 'cuda') picks the backend and, on CUDA, binds this process to GPU LOCAL_RANK.
    ``timeout_s`` bounds joining and every collective, so a peer that never answers is a failure torchrun can
    retry rather than a hang.
    """
    if not launched():
        return Dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device_kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"train.device: LOCAL_RANK={local_rank} but torch sees {torch.cuda.device_count()} "
                              "CUDA device(s); start at most that many processes per node")
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        timeout = timedelta(seconds=timeout_s)
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo", timeout=timeout,
                                **_attempt_store(rank, world, timeout))
    return Dist(rank, world, local_rank, active=True, owns_group=owns)


def _attempt_store(rank: int, world: int, timeout: timedelta) -> dict:
    """A store of this torchrun attempt's own, when torchrun's agent hosts the store (``--max-restarts``).

    The agent's store outlives a restart with the failed attempt's keys in it, and torch joins it without a
    per-attempt prefix: a restarted worker can read a dead peer's address before the peer writes its new one, and
    gloo's connect is then refused (measured here: most restarts failed so, under load). A prefix per attempt
    (``TORCHELASTIC_RESTART_COUNT``) leaves only this attempt's keys in view. Empty outside torchrun's agent.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                           timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return {"store": dist.PrefixStore(f"sharpvision/attempt_{attempt}", client), "rank": rank, "world_size": world}


def shutdown(d: Dist) -> None:
    """Leave the process group after a run that finished (on an error the process just exits and torchrun
    stops the other workers, which may be waiting in a collective that will never complete)."""
    if d.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_all(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all workers (in place, and returned): global losses, counts, accuracies."""
    if d.active and d.world > 1:
        dist.all_reduce(values)
    return values


def gather(d: Dist, obj: object) -> list[object]:
    """Every worker's ``obj`` in rank order (pickled through the process group; used for RNG states)."""
    if not d.active or d.world == 1:
        return [obj]
    out: list[object] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(d: Dist, module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every worker, so all evaluate and save the same model."""
    if d.active and d.world > 1:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def mean_over_group(group: dist.ProcessGroup | None, size: int, tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` over the ``size`` workers of ``group`` in place, as one flat all-reduce."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, group=group)
    flat /= size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def perturbation_groups(m: int | None, batch_size: int, d: Dist,
                   no_sync: Callable[[], AbstractContextManager]) -> tuple[PerturbationGroups, int]:
    """How SAM perturbs under ``d``'s workers for ``optim.m`` (None: each worker's batch); returns the plan and m.

    m below the worker batch splits it into groups (one ascent each); m above it shares the ascent gradient
    over the m / worker-batch workers of a subgroup; m equal to ``batch_size`` is one perturbation for the
    whole global batch, as one process would compute it.
    """
    if batch_size % d.world:
        raise ConfigError(f"data.batch_size: {batch_size} does not split evenly over {d.world} workers; use a "
                          f"multiple of {d.world} (it is the global batch)")
    local = batch_size // d.world
    m = m or local
    average = partial(mean_over_group, None, d.world) if d.active and d.world > 1 else None
    if m <= local:
        if local % m:
            raise ConfigError(f"optim.m: {m} must divide the per-worker batch {local} (data.batch_size "
                              f"{batch_size} over {d.world} workers) or be a multiple of it")
        return PerturbationGroups(splits=local // m, no_sync=no_sync, average=average), m
    span = m // local
    if m % local or d.world % span:
        raise ConfigError(f"optim.m: {m} must be a multiple of the per-worker batch {local} that divides "
                          f"data.batch_size={batch_size}, or divide {local}")
    group = None if span == d.world else dist.new_subgroups(group_size=span)[0]
    return PerturbationGroups(no_sync=no_sync, share=partial(mean_over_group, group, span), average=average), m


def rank_seed(seed: int, rank: int) -> int:
    """Rank r's seed for dropout, drop-path and augmentation: distinct per worker, rank 0 keeps ``seed``."""
    return (seed + 1_000_003 * rank) % 2**32


__all__ = ["Dist", "broadcast_buffers", "gather", "launched", "launched_rank", "mean_over_group",
           "perturbation_groups", "rank_seed", "restarted", "setup", "shutdown", "sum_all"]
