"""What makes the top Hessian eigenvalue cheap: the cost of one Hessian-vector product by each way of computing it
(the levers), and the number of products Lanczos needs for a given accuracy from each start.

Per product, on a micro model at initialisation, one fixed sample of ``--images`` Fashion-MNIST-shaped inputs,
eval mode, medians of ``--rounds`` rounds with the ways rotated in one process. The baseline is PyHessian's
single-batch way, and ours before chunking: float32, math attention (SDPA's math kernel), the sample as one batch,
its gradient graph built once and each product one backward through it. Each lever changes one thing:

- ``streaming``: forward, gradient graph and product every time (what many batches do without ``keep_graph``);
- ``forward-over-reverse``: ``torch.func.jvp`` of ``torch.func.grad``, every time;
- ``forward-over-reverse, linearized once``: ``torch.func.linearize`` of the gradient, its graph kept across products;
- ``4 chunks, kept``: the same sample as 4 graphs of 64 (what ``hvp_operator`` now does with a kept graph);
- ``float64``: model and data in float64 (what float32 throughout saves);
- ``timm attention code`` (ViT): timm's ``fused_attn`` off, its own q k^T / softmax / v in Python (what the
  analysis did before; the baseline keeps ``F.scaled_dot_product_attention`` with the math kernel pinned);
- ``SDPA fused kernel`` (ViT): the fused CPU kernel instead, which has no double backward (an error);
- ``vmap x B``: B products in one backward through the kept graph (``is_grads_batched``), cost per product;
- ``channels last`` (convolutional models): weights and images in channels-last memory order.

Lanczos bookkeeping: one step's re-orthogonalisation and Ritz values, against one product.

Products to accuracy (exact counts, not timed): Lanczos from a Gaussian start and from the gradient-plus-Gaussian
start ``hessian_eigenvalues`` uses, and power iteration from the Gaussian, the first step after which the estimate
stays within 0.5% and 0.1% of the converged top eigenvalue (Lanczos at ``--iters`` steps); and
``hessian_eigenvalues`` at ``tol=1e-3``: its products and error, and the products each stopping rule alone would
have taken on the same run: the plain residual rule (``||Hy - theta y|| <= tol |theta|``), the two-step Ritz change
and the Kato-Temple bound (``lanczos`` stops at whichever of the last two comes first).

    python benchmarks/hvp_levers.py            # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from common import provenance, write_result
from torch import nn
from torch.func import functional_call, grad, jvp, linearize
from torch.nn.attention import SDPBackend, sdpa_kernel

from sharpvision import models
from sharpvision.analysis.core import analysis_mode, dot, hvp_operator, norm
from sharpvision.analysis.hessian import Lanczos, _Basis, _kato_temple, _random, hessian_eigenvalues, lanczos

MODELS = ("vit_micro", "resnet_micro")
ACCURACY = (5e-3, 1e-3)
Way = Callable[[list], object]


def _one_graph(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[list], list]:
    """v -> H v by one backward through the whole batch's gradient graph, built on first use."""
    params = list(model.parameters())
    graph: list[tuple[torch.Tensor, ...]] = []

    def hvp(v: list) -> list:
        if not graph:
            graph.append(torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params, create_graph=True))
        return list(torch.autograd.grad(graph[0], params, v, retain_graph=True))

    return hvp


def _product_ways(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[Way, int]]:
    """The ways that run under our analysis mode (math attention), with how many products one call makes."""
    loss_fn = nn.functional.cross_entropy
    names, params = zip(*model.named_parameters())
    kept = _one_graph(model, x, y)
    streaming = hvp_operator(model, loss_fn, [(x, y)], params, keep_graph=False)
    chunks = hvp_operator(model, loss_fn, list(zip(x.chunk(4), y.chunk(4))), params, keep_graph=True)
    primals = {n: p.detach() for n, p in zip(names, params)}

    def loss(theta: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, theta, (x,)), y)

    linear: list[Callable] = []

    def linearized(vs: list) -> object:
        if not linear:
            linear.append(linearize(grad(loss), primals)[1])
        return linear[0](dict(zip(names, vs[0])))

    graph = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)

    def batched(vs: list) -> object:
        return torch.autograd.grad(graph, params, [torch.stack(z) for z in zip(*vs)], retain_graph=True,
                                   is_grads_batched=True)

    return {"kept graph": (lambda vs: kept(vs[0]), 1), "streaming": (lambda vs: streaming(vs[0]), 1),
            "forward-over-reverse": (lambda vs: jvp(grad(loss), (primals,), (dict(zip(names, vs[0])),)), 1),
            "forward-over-reverse, linearized once": (linearized, 1),
            "4 chunks, kept": (lambda vs: chunks(vs[0]), 1),
            "vmap x 2": (batched, 2), "vmap x 4": (batched, 4)}


def _float64_way(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Way:
    model64 = copy.deepcopy(model).double()
    hvp = _one_graph(model64, x.double(), y)
    return lambda vs: hvp([v.double() for v in vs[0]])


def _channels_last_way(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Way:
    """Kept-graph products with the convolutions' weights and the images in channels-last memory order (what
    oneDNN's CPU convolutions prefer); the same numbers, another layout."""
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    hvp = _one_graph(model_cl, x.contiguous(memory_format=torch.channels_last), y)
    return lambda vs: hvp(vs[0])


def _attention_way(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fused: bool) -> Way:
    """Kept-graph products with timm's own attention code (``fused_attn`` off: q k^T, softmax, times v, in Python)
    or, ``fused``, with SDPA's fused CPU kernel (flash attention for CPU) in place of the math kernel."""
    modules = [m for m in model.modules() if hasattr(m, "fused_attn")]
    hvp: list[Callable] = []

    def product(vs: list) -> object:
        for m in modules:
            m.fused_attn = fused
        try:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION if fused else SDPBackend.MATH):
                if not hvp:
                    hvp.append(_one_graph(model, x, y))
                return hvp[0](vs[0])
        finally:
            for m in modules:
                m.fused_attn = True

    return product


def _bookkeeping(params: list[torch.Tensor], steps: int) -> float:
    """Seconds of one Lanczos step's own work at ``steps`` vectors: projection, norms, Ritz values."""
    template = [p.detach() for p in params]
    basis = _Basis(template, steps + 1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        v = _random(template, generator, "gaussian")
        basis.append([t / norm(v) for t in v])
    w = _random(template, generator, "gaussian")
    run = Lanczos([1.0] * steps, [0.5] * (steps - 1), steps, False)
    start = time.perf_counter()
    basis.project_out(w)
    run.ritz_values()
    return time.perf_counter() - start


def time_ways(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> dict[str, object]:
    """Seconds per product by each way (medians), and the ways that fail with their error."""
    table = {name: way for name, (way, _) in _product_ways(model, x, y).items()}
    counts = {name: count for name, (_, count) in _product_ways(model, x, y).items()}
    table["float64"], counts["float64"] = _float64_way(model, x, y), 1
    if sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1:  # not a ViT's or Mixer's one patch embedding
        table["channels last"], counts["channels last"] = _channels_last_way(model, x, y), 1
    if any(hasattr(m, "fused_attn") for m in model.modules()):
        for name, fused in (("timm attention code", False), ("SDPA fused kernel", True)):
            table[name], counts[name] = _attention_way(model, x, y, fused), 1
    params = list(model.parameters())
    vectors = [[torch.randn_like(q) for q in params] for _ in range(4)]
    times: dict[str, list[float]] = {w: [] for w in table}
    failed: dict[str, str] = {}
    order = list(table)
    for r in range(rounds + 1):  # round 0 warms every way up (graphs built, linearization traced): not counted
        for way in order[r % len(order):] + order[:r % len(order)]:
            if way in failed:
                continue
            start = time.perf_counter()
            try:
                table[way](vectors[:counts[way]])
            except (RuntimeError, NotImplementedError) as e:
                failed[way] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                continue
            if r:
                times[way].append((time.perf_counter() - start) / counts[way])
    seconds = {w: statistics.median(t) for w, t in times.items() if t}
    steps = 20
    book = statistics.median(_bookkeeping(params, steps) for _ in range(rounds))
    return {"seconds_per_product": seconds, "relative_to_kept_graph":
            {w: s / seconds["kept graph"] for w, s in seconds.items()}, "failed": failed,
            "lanczos_bookkeeping_per_step_s": book, "bookkeeping_at_steps": steps}


def steps_to(values: list[float], target: float, accuracy: float) -> int | None:
    """The first step (1-based) whose estimate is within ``accuracy`` of ``target`` and stays there."""
    inside = [abs(v - target) <= accuracy * abs(target) for v in values]
    return next((i + 1 for i in range(len(values)) if all(inside[i:])), None)


def _tops(run: Lanczos, tol: float = 1e-3) -> tuple[list[float], list[float], list[bool]]:
    """After each step: the top Ritz value, its residual ||H y - theta y|| = beta_m |last component of y|, and
    whether the Kato-Temple rule of ``lanczos`` holds at ``tol``."""
    t, tops, residuals, temple = run.tridiagonal(), [], [], []
    betas = [*run.beta, 0.0]
    for m in range(1, len(run.alpha) + 1):
        values, vectors = torch.linalg.eigh(t[:m, :m])
        tops.append(values[-1].item())
        residuals.append(betas[m - 1] * vectors[-1, -1].abs().item())
        temple.append(_kato_temple(values, betas[m - 1] * vectors[-1].abs(), 1, tol))
    return tops, residuals, temple


def products_needed(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int) -> dict[str, object]:
    """Steps to each accuracy for Lanczos from two starts and for power iteration (Rayleigh quotient)."""
    params = list(model.parameters())
    hvp = hvp_operator(model, nn.functional.cross_entropy, [(x, y)], params, keep_graph=True)
    template = [p.detach() for p in params]
    gaussian = _random(template, torch.Generator().manual_seed(0), "gaussian")
    gradient = hvp.gradient()
    mixed = [g / norm(gradient) + z / norm(gaussian) for g, z in zip(gradient, gaussian)]
    random_tops, _, _ = _tops(lanczos(hvp, gaussian, iters))
    mixed_tops, _, _ = _tops(lanczos(hvp, mixed, iters))
    converged = max(random_tops[-1], mixed_tops[-1])
    power, v = [], [s / norm(gaussian) for s in gaussian]
    for _ in range(iters):
        hv = hvp(v)
        power.append(dot(hv, v).item())
        v = [h / norm(hv) for h in hv]
    ours = hessian_eigenvalues(model, nn.functional.cross_entropy, [(x, y)], tol=1e-3)
    # the residual rule hessian_eigenvalues used before, on a run from the same start (a new graph: leaving its
    # analysis mode, hessian_eigenvalues put the BatchNorm buffers back in place, which the old graph saved)
    hvp = hvp_operator(model, nn.functional.cross_entropy, [(x, y)], params, keep_graph=True)
    _, residuals, temple = _tops(lanczos(hvp, mixed, ours["matvecs"] + 20))
    tops = mixed_tops[:len(residuals)]
    residual_rule = next((m + 1 for m, (t, r) in enumerate(zip(tops, residuals)) if r <= 1e-3 * abs(t)), None)
    two_step = next((m + 1 for m in range(2, len(tops)) if tops[m] - tops[m - 2] <= 1e-3 * abs(tops[m])), None)
    kato_temple = next((m + 1 for m, done in enumerate(temple) if done), None)
    return {"converged": converged, "lanczos_estimates": random_tops, "lanczos_gradient_start_estimates": mixed_tops,
            "power_estimates": power,
            "ours_products_at_tol_1e-3": ours["matvecs"],
            "ours_error_at_tol_1e-3": abs(ours["eigenvalues"][0] - converged) / abs(converged),
            "residual_rule_products_at_tol_1e-3": residual_rule, "two_step_rule_products_at_tol_1e-3": two_step,
            "kato_temple_rule_products_at_tol_1e-3": kato_temple,
            **{f"lanczos_steps_to_{a:g}": steps_to(random_tops, converged, a) for a in ACCURACY},
            **{f"lanczos_gradient_start_steps_to_{a:g}": steps_to(mixed_tops, converged, a) for a in ACCURACY},
            **{f"power_steps_to_{a:g}": steps_to(power, converged, a) for a in ACCURACY}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--images", "--sample", dest="sample", type=int, default=256,
                   help="inputs in the one-batch sample (--sample still parses)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--notes", default="", help="how the machine was shared, recorded with the results")
    args = p.parse_args()
    rows = {}
    for name in args.models:
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=28, in_chans=1)
        x = torch.randn(args.sample, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 10, (args.sample,), generator=torch.Generator().manual_seed(2))
        with analysis_mode(model, "eval"):
            timed = time_ways(model, x, y, args.rounds)
            needed = products_needed(model, x, y, args.iters)
        rows[name] = {**timed, **needed}
        print(name, {w: f"{s:.3f}s" for w, s in timed["seconds_per_product"].items()}, timed["failed"],
              {k: v for k, v in needed.items() if "steps" in k or "products" in k}, flush=True)
    write_result({"benchmark": "hvp_levers", **provenance("cpu"), "notes": args.notes, "sample": args.sample,
                  "rounds": args.rounds, "iters": args.iters, "models": rows}, "hvp_levers_cpu")


if __name__ == "__main__":
    main()
