"""Run under torchrun: SAM steps through DDP for several m, recording every rank's ascent gradients and weights.

    torchrun --standalone --nproc-per-node 4 tests/ddp_probe.py OUT.pt

For each m in (worker batch / 2, worker batch, 2 x worker batch, global batch) a fresh MLP takes STEPS SAM steps on
a fixed global batch sequence, each rank on its slice (as the trainer's sampler gives it). Rank 0 saves, per m,
every rank's ascent gradients (flattened, per step and perturbation) and final weights; GSAM and LookSAM (every
2nd step) run at the worker batch too, where each combines its local gradient with the all-reduced one.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sharpvision.optim import GSAM, SAM, LookSAM
from sharpvision.train import distributed
from sharpvision.train.step import make_step

GLOBAL_BATCH, STEPS, FEATURES, CLASSES = 16, 3, 12, 5


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, GLOBAL_BATCH, FEATURES, generator=g), torch.randint(0, CLASSES, (STEPS, GLOBAL_BATCH),
                                                                                   generator=g)


def run(d: distributed.Dist, m: int, kind: type[SAM] = SAM) -> dict:
    model = net()
    ddp = DistributedDataParallel(model)
    opt = kind(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.5)
    ascents: list[torch.Tensor] = []
    real_perturb = opt.perturb

    def recording_perturb() -> torch.Tensor:
        ascents.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
        return real_perturb()
    opt.perturb = recording_perturb
    groups, m_eff = distributed.perturbation_groups(m, GLOBAL_BATCH, d, ddp.no_sync)
    every, steps = (2 if kind is LookSAM else 1), [0]
    step = make_step(ddp, opt, nn.CrossEntropyLoss(), None, nullcontext, groups=groups, sam_every=every,
                     step_index=lambda: steps[0])
    x, y = data()
    local = GLOBAL_BATCH // d.world
    for s in range(STEPS):
        step(x[s, d.rank * local:(d.rank + 1) * local], y[s, d.rank * local:(d.rank + 1) * local])
        steps[0] += 1
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"m": m_eff, "ascents": distributed.gather(d, torch.stack(ascents)),
            "weights": distributed.gather(d, weights)}


if __name__ == "__main__":
    d = distributed.setup("cpu")
    local = GLOBAL_BATCH // d.world
    results = {m: run(d, m) for m in (local // 2, local, 2 * local, GLOBAL_BATCH)}
    results |= {kind.__name__: run(d, local, kind) for kind in (GSAM, LookSAM)}
    if d.main:
        torch.save(results, sys.argv[1])
    distributed.shutdown(d)
