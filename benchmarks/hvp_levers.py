"""What bounds the top-eigenvalue speed against PyHessian (goal: 2x its speed): the cost of one Hessian-vector
product by each way of computing it, and the number of products Lanczos and power iteration need for the same
accuracy.

Per product, on a micro model at initialisation, one fixed sample of ``--sample`` Fashion-MNIST-shaped inputs as
one batch, eval mode with math attention (as every Hessian analysis runs), float32, medians of ``--rounds`` rounds
with the ways rotated in one process:

- ``kept graph``: the gradient graph built once, each product one backward through it (ours and PyHessian's);
- ``streaming``: forward, gradient graph and product every time (ours on many batches);
- ``forward-over-reverse``: ``torch.func.jvp`` of ``torch.func.grad``;
- ``vmap x B``: B products in one backward through the kept graph (``is_grads_batched``), cost per product.

Products to accuracy: Lanczos (full re-orthogonalisation) and power iteration from the same Gaussian start, the
first step at which the estimate is within 0.5% and 0.1% of the converged top eigenvalue (Lanczos at 60 steps).
A product count is exact, not timed. ``hessian_eigenvalues``
at its default tolerance (residual <= 1e-3 of the eigenvalue) on the same model and data: its products and error.

    python benchmarks/hvp_levers.py            # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import provenance, write_result
from torch import nn
from torch.func import functional_call, grad, jvp

from sharpvision import models
from sharpvision.analysis.core import analysis_mode, dot, norm
from sharpvision.analysis.hessian import _random, hessian_eigenvalues, lanczos

MODELS = ("vit_micro", "resnet_micro")
ACCURACY = (5e-3, 1e-3)


def ways(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[Callable[[list], object], int]]:
    """Each way of computing H v, with how many products one call makes."""
    loss_fn = nn.functional.cross_entropy
    names, params = zip(*model.named_parameters())
    graph = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    primals = {n: p.detach() for n, p in zip(names, params)}

    def loss(theta: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, theta, (x,)), y)

    def batched(vs: list) -> object:
        return torch.autograd.grad(graph, params, [torch.stack(z) for z in zip(*vs)], retain_graph=True,
                                   is_grads_batched=True)

    def streaming(vs: list) -> object:
        g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, vs[0])

    return {"kept graph": (lambda vs: torch.autograd.grad(graph, params, vs[0], retain_graph=True), 1),
            "streaming": (streaming, 1),
            "forward-over-reverse": (lambda vs: jvp(grad(loss), (primals,), (dict(zip(names, vs[0])),)), 1),
            "vmap x 2": (batched, 2), "vmap x 4": (batched, 4)}


def steps_to(values: list[float], target: float, accuracy: float) -> int | None:
    """The first step (1-based) whose estimate is within ``accuracy`` of ``target`` and stays there."""
    inside = [abs(v - target) <= accuracy * abs(target) for v in values]
    return next((i + 1 for i in range(len(values)) if all(inside[i:])), None)


def products_needed(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int) -> dict[str, object]:
    """Steps to each accuracy for Lanczos (top Ritz value after each step) and power iteration (Rayleigh quotient)."""
    params = list(model.parameters())
    graph = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params, create_graph=True)

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(graph, params, v, retain_graph=True))

    start = _random([p.detach() for p in params], torch.Generator().manual_seed(0), "gaussian")
    run = lanczos(hvp, start, iters)
    ritz = [torch.linalg.eigvalsh(run.tridiagonal()[:k, :k])[-1].item() for k in range(1, len(run.alpha) + 1)]
    converged = ritz[-1]
    power, v = [], [s / norm(start) for s in start]
    for _ in range(iters):
        hv = hvp(v)
        power.append(dot(hv, v).item())
        v = [h / norm(hv) for h in hv]
    ours = hessian_eigenvalues(model, nn.functional.cross_entropy, [(x, y)], tol=1e-3)
    return {"converged": converged, "lanczos_estimates": ritz, "power_estimates": power,
            "ours_products_at_tol_1e-3": ours["matvecs"],
            "ours_error_at_tol_1e-3": abs(ours["eigenvalues"][0] - converged) / abs(converged),
            **{f"lanczos_steps_to_{a:g}": steps_to(ritz, converged, a) for a in ACCURACY},
            **{f"power_steps_to_{a:g}": steps_to(power, converged, a) for a in ACCURACY}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--sample", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=60)
    args = p.parse_args()
    rows = {}
    for name in args.models:
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=28, in_chans=1)
        x = torch.randn(args.sample, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 10, (args.sample,), generator=torch.Generator().manual_seed(2))
        with analysis_mode(model, "eval"):
            table = ways(model, x, y)
            vectors = [[torch.randn_like(q) for q in model.parameters()] for _ in range(4)]
            times: dict[str, list[float]] = {w: [] for w in table}
            order = list(table)
            for r in range(args.rounds):
                for way in order[r % len(order):] + order[:r % len(order)]:
                    fn, count = table[way]
                    start = time.perf_counter()
                    fn(vectors[:count])
                    times[way].append((time.perf_counter() - start) / count)
            needed = products_needed(model, x, y, args.iters)
        seconds = {w: statistics.median(t) for w, t in times.items()}
        rows[name] = {"seconds_per_product": seconds,
                      "relative_to_kept_graph": {w: s / seconds["kept graph"] for w, s in seconds.items()},
                      **needed}
        print(name, {w: f"{s:.3f}s" for w, s in seconds.items()},
              {k: v for k, v in needed.items() if "steps" in k}, flush=True)
    write_result({"benchmark": "hvp_levers", **provenance("cpu"), "sample": args.sample, "rounds": args.rounds,
                  "iters": args.iters, "models": rows}, "hvp_levers_cpu")


if __name__ == "__main__":
    main()
