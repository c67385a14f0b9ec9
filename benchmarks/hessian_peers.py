"""Top Hessian eigenvalue: ours (Lanczos) against PyHessian (power iteration), both checked against SciPy's eigsh
(ARPACK, through curvlinops), at equal accuracy.

    make bench-deps && python benchmarks/hessian_peers.py --runs runs/geometry/tiny_vit runs/geometry/tiny_resnet
    python benchmarks/hessian_peers.py --device cuda --images 2048 --models resnet18_cifar vit_s4

Same model (eval mode), same fixed Fashion-MNIST sample as one batch (each side keeps its gradient graph, as
PyHessian's single-batch mode does). The reference is curvlinops' HessianLinearOperator under SciPy's eigsh at
tol 1e-6. Each tool runs at every tolerance of ``--tols`` (each by its own rule: ours the Kato-Temple bound or the
Ritz value's change over two Lanczos steps, PyHessian the change of its estimate between power steps), every repeat
side by side in one
process with the order rotated; a tool's time at a tolerance is the median over repeats. "At equal accuracy" takes
each tool at its fastest tolerance whose value lands within ``--accuracy`` (0.5%) of eigsh in every repeat, and
the ratio is PyHessian's time there over ours there. PyHessian draws its start from the global RNG; it is seeded
(0) before each call, so its value at a tolerance is the same in every repeat; each of its calls starts with no
stored gradient (its ``backward(create_graph=True)`` adds to ``.grad``, so a gradient left by an earlier call or
peer would enter the product). Both sides take the model in eval mode (BatchNorm on its running statistics), in
float32, with the same images and the mean cross-entropy. On a timm ViT whose attention is
fused, PyHessian (no double backward for SDPA) and curvlinops (no forward AD) fail as they are: that is recorded,
and they run again under our math-attention mode. PyHessian 0.1 is the PyPI release, a peer of the benchmarks
only (``make bench-deps``), never a dependency of the package. Results go to
benchmarks/results/hessian_peers_<device>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from common import provenance, write_result
from torch import nn

from sharpvision import config, models
from sharpvision.analysis.core import analysis_mode, sample_batches
from sharpvision.analysis.hessian import hessian_eigenvalues
from sharpvision.analysis.run import load_subject
from sharpvision.data import build_datasets

Tool = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], tuple[float, int | None]]


def ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> tuple[float, int | None]:
    result = hessian_eigenvalues(model, nn.functional.cross_entropy, [(x, y)], k=1, tol=tol)
    return result["eigenvalues"][0], result["matvecs"]


def pyhessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> tuple[float, int | None]:
    from pyhessian import hessian
    torch.manual_seed(0)  # its start vector comes from the global RNG
    model.zero_grad(set_to_none=True)  # its backward adds to .grad: start from none, as a fresh model does
    h = hessian(model.eval(), nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    return float(h.eigenvalues(maxIter=100, tol=tol, top_n=1)[0][0]), None


def eigsh(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> tuple[float, int | None]:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh as arpack
    params = [p for p in model.eval().parameters() if p.requires_grad]
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False)
    return float(arpack(op.to_scipy(), k=1, which="LA", tol=tol, return_eigenvectors=False)[0]), None


OURS, PEER, REFERENCE = "sharpvision (Lanczos)", "PyHessian 0.1 (power)", "eigsh (curvlinops + SciPy ARPACK)"
TOOLS: dict[str, Tool] = {OURS: ours, PEER: pyhessian}


def attempt(fn: Tool, model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float,
            math_attention: bool) -> tuple[float | None, int | None, float, str | None]:
    """(lambda_max, products if known, seconds, error) of one call, as the tool runs or under our math attention."""
    t0 = time.perf_counter()
    try:
        with analysis_mode(model) if math_attention else contextlib.nullcontext():
            value, products = fn(model, x, y, tol)
    except Exception as e:  # a tool that cannot run this model is a result too
        return None, None, 0.0, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if x.is_cuda:
        torch.cuda.synchronize()
    return value, products, time.perf_counter() - t0, None


def _run(fn: Tool, model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float,
         failed_as_is: dict[str, str], name: str) -> tuple[float | None, int | None, float]:
    """One call; a tool that fails as it is is recorded and run again under our math attention."""
    value, products, seconds, error = attempt(fn, model, x, y, tol, math_attention=name in failed_as_is)
    if error and name not in failed_as_is:
        failed_as_is[name] = error
        value, products, seconds, error = attempt(fn, model, x, y, tol, math_attention=True)
    if error:
        raise RuntimeError(f"{name} fails even under math attention: {error}")
    return value, products, seconds


def measure(label: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, tols: list[float], repeats: int,
            accuracy: float) -> dict:
    """Both tools at every tolerance, ``repeats`` rounds, order rotated; the reference once."""
    failed_as_is: dict[str, str] = {}
    reference, _, reference_s = _run(eigsh, model, x, y, 1e-6, failed_as_is, REFERENCE)
    calls = [(name, tol) for tol in tols for name in TOOLS]
    runs: dict[tuple[str, float], list[tuple[float, int | None, float]]] = {c: [] for c in calls}
    for r in range(repeats):
        for name, tol in calls[r % len(calls):] + calls[:r % len(calls)]:
            runs[name, tol].append(_run(TOOLS[name], model, x, y, tol, failed_as_is, name))
    rows: dict[str, dict] = {name: {} for name in TOOLS}
    for (name, tol), got in runs.items():
        errors = [abs(v - reference) / abs(reference) for v, _, _ in got]
        rows[name][f"{tol:g}"] = {"lambda_max": got[0][0], "rel_error_max": max(errors),
                                  "products": got[0][1], "time_s_median": statistics.median(s for _, _, s in got),
                                  "times_s": [s for _, _, s in got], "within_accuracy": max(errors) <= accuracy}
    best = {}
    for name, by_tol in rows.items():
        ok = {t: r for t, r in by_tol.items() if r["within_accuracy"]}
        best[name] = min(ok, key=lambda t: ok[t]["time_s_median"]) if ok else None
    ratio = None
    if best[OURS] and best[PEER]:
        ratio = rows[PEER][best[PEER]]["time_s_median"] / rows[OURS][best[OURS]]["time_s_median"]
    return {"model": label, "params": sum(p.numel() for p in model.parameters()), "reference": reference,
            "reference_time_s": reference_s, "tools": rows, "fastest_within_accuracy": best,
            "speedup_at_equal_accuracy": ratio, "failed_as_is": failed_as_is}


def subjects(args: argparse.Namespace) -> Iterator[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """Models at initialization (seed 0) on a Fashion-MNIST sample, then trained runs on their own data."""
    cfg = config.from_dict(config.apply_overrides({"data": {"augment": "none"}}, args.overrides))
    (x, y), = sample_batches(build_datasets(cfg.data).train, args.sample, args.sample, seed=0, device=args.device)
    for name in args.models:
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, img_size=x.shape[-1], in_chans=x.shape[1])
        yield f"{name} at init", model.to(args.device).eval(), x, y
    for run in args.runs:
        subject = load_subject(run)
        n = min(args.sample, len(subject.bundle.train_plain))
        (rx, ry), = sample_batches(subject.bundle.train_plain, n, n, seed=0, device=args.device)
        yield f"{subject.cfg.model.name} trained ({run})", subject.model.to(args.device).eval(), rx, ry


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", default=["resnet_micro", "vit_micro"])
    p.add_argument("--runs", nargs="*", default=[], help="trained run directories to measure as well")
    p.add_argument("--images", "--sample", dest="sample", type=int, default=256,
                   help="training examples (one batch; --sample still parses)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tols", type=float, nargs="+", default=[3e-2, 1e-2, 3e-3, 1e-3, 1e-4])
    p.add_argument("--accuracy", type=float, default=5e-3, help="equal accuracy: within this of eigsh")
    p.add_argument("--out", help="write the JSON here instead of benchmarks/results/")
    p.add_argument("--notes", default="", help="how the machine was shared, recorded with the results")
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    rows = []
    for label, model, x, y in subjects(args):
        rows.append(measure(label, model, x, y, args.tols, args.repeats, args.accuracy))
        r = rows[-1]
        for name, by_tol in r["tools"].items():
            cells = "  ".join(f"tol {t}: {c['time_s_median']:.2f} s err {c['rel_error_max']:.1e}"
                              for t, c in by_tol.items())
            print(f"{label:<40} {name:<24} {cells}", flush=True)
        speed = r["speedup_at_equal_accuracy"]
        print(f"{label:<40} at equal accuracy ({args.accuracy:g}): ours at tol {r['fastest_within_accuracy'][OURS]}, "
              f"PyHessian at tol {r['fastest_within_accuracy'][PEER]}: "
              f"{'n/a' if speed is None else f'{speed:.2f}x'} PyHessian's speed", flush=True)
    write_result({"benchmark": "hessian_peers", "figure": "top Hessian eigenvalue: time at equal accuracy",
                  **provenance(args.device), "notes": args.notes, "sample": args.sample, "repeats": args.repeats,
                  "tols": args.tols, "accuracy": args.accuracy, "results": rows},
                 f"hessian_peers_{args.device}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
