"""kNN accuracy of a model's features: the test figure of a contrastive pre-training run, which has no classifier.

The bank is the training set's features (no augmentation), the queries the test set's; both are L2-normalised and
a query takes the label with the largest sum of exp(cosine / 0.07) over its k nearest bank features (the weighted
vote of Wu et al. 2018, which SimCLR-style code bases report during pre-training).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

VOTE_TEMPERATURE = 0.07


@torch.no_grad()
def features(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised features (``model`` on single images) and labels of every batch, in order."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for x, y in batches:
        feats.append(F.normalize(model(x.to(device)).float(), dim=1))
        labels.append(y.to(device))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_accuracy(model: nn.Module, bank: Iterable, queries: Iterable, k: int, device: torch.device,
                 num_classes: int | None = None) -> dict[str, float]:
    """Weighted kNN top-1 accuracy of ``queries`` against ``bank``; ``{"accuracy", "correct", "n"}``."""
    bank_f, bank_y = features(model, bank, device)
    query_f, query_y = features(model, queries, device)
    classes = num_classes or int(bank_y.max()) + 1
    k = min(k, len(bank_f))
    correct = 0
    for start in range(0, len(query_f), 1024):
        sim, idx = (query_f[start:start + 1024] @ bank_f.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), classes, device=device).scatter_add_(1, bank_y[idx],
                                                                          (sim / VOTE_TEMPERATURE).exp())
        correct += int((votes.argmax(1) == query_y[start:start + 1024]).sum())
    return {"accuracy": correct / max(len(query_f), 1), "correct": correct, "n": len(query_f)}
