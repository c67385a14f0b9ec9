"""Top-1 accuracy and mean loss of a model over a data loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
             autocast: Callable[[], AbstractContextManager] = nullcontext) -> dict[str, float]:
    """``{"loss", "accuracy", "n"}`` in eval mode; sums stay on the device until the end (one sync)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the data loader yielded no examples")
    return {"loss": loss_sum.item() / n, "accuracy": correct.item() / n, "n": n}
