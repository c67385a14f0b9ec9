"""Model FLOPs per training image and model FLOPs utilization (MFU) against the device's peak.

MFU = (model FLOPs of the passes a step runs) / (step time x peak FLOP/s). The FLOP count comes from
``torch.utils.flop_counter`` on one forward + backward (matmuls, convolutions and attention; elementwise
work is not counted, as in the PaLM definition). A SAM step runs two passes, so it counts twice: the
ascent pass is work the algorithm needs, and a variant that skips it is credited with fewer FLOPs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sharpvision.passes import frozen_bn_stats

# Dense peak TFLOP/s (no sparsity) by device-name fragment: (bf16 tensor cores, tf32 tensor cores, fp32).
# Vendor data sheets; the first fragment found in torch.cuda.get_device_name() wins, so specific names come first.
PEAK_TFLOPS: dict[str, tuple[float, float, float]] = {
    "H100 PCIe": (756.0, 378.0, 51.0),
    "H100": (989.4, 494.7, 66.9),  # SXM / HBM3
    "H200": (989.4, 494.7, 66.9),
    "GH200": (989.4, 494.7, 66.9),
    "A100": (312.0, 156.0, 19.5),
    "L40S": (362.1, 181.0, 91.6),
    "L4": (121.0, 60.0, 30.3),
    "A10G": (70.0, 35.0, 31.2),
    "RTX 4090": (165.2, 82.6, 82.6),
}


def train_flops_per_image(model: nn.Module, example: torch.Tensor, loss_fn: nn.Module | None = None) -> float:
    """FLOPs of one forward + backward per image, counted on ``example`` (a batch of >= 1 inputs).

    Gradients are put back as they were, so it can run on the live model before training starts.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    saved = [p.grad for p in model.parameters()]
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    devices = [example.device] if example.device.type == "cuda" else []
    try:  # no side effects: the RNG (dropout) and BatchNorm statistics are left as they were
        with torch.random.fork_rng(devices=devices), frozen_bn_stats(model), counter:
            logits = model(example)
            loss_fn(logits.float(), torch.zeros(len(example), dtype=torch.long, device=example.device)).backward()
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad = g
        model.train(was_training)
    return counter.get_total_flops() / len(example)


def forward_flops(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one inference forward per image (eval mode, no gradients), as the flop counter counts them
    (2 per multiply-add; matmuls, convolutions and attention)."""
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model.eval()(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / len(example)


def peak_flops(device: torch.device, precision: str, override_tflops: float | None = None) -> float | None:
    """The device's dense peak FLOP/s for ``precision`` ("bf16" or "fp32"), or None when unknown (CPUs, unlisted GPUs).

    fp32 counts TF32 tensor cores when torch allows TF32 matmuls. ``override_tflops`` (``train.peak_tflops``)
    wins, for GPUs not in the table.
    """
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, (bf16, tf32, fp32) in PEAK_TFLOPS.items():
        if fragment in name:
            if precision == "bf16":
                return bf16 * 1e12
            return (tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32) * 1e12
    return None


def passes_in_steps(first: int, count: int, sam: bool, sam_every: int = 1) -> int:
    """Forward + backward passes run by optimizer steps ``first .. first + count - 1``.

    A plain step runs one; a SAM step two; with ``sam_every = k`` only steps whose index is a multiple of k
    run the second (as :func:`sharpvision.train.step.make_step` decides).
    """
    if not sam:
        return count
    sam_steps = (first + count - 1) // sam_every - (first - 1) // sam_every if count else 0
    return count + sam_steps
