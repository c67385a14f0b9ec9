"""Top Hessian eigenvalue: ours (Lanczos) against PyHessian (power iteration) and curvlinops (SciPy eigsh).

    make bench-deps && python benchmarks/hessian_peers.py            # CPU: resnet_micro and vit_micro
    python benchmarks/hessian_peers.py --device cuda --sample 2048 --models resnet18_cifar vit_s4

Same model (eval mode), same fixed Fashion-MNIST sample, tolerance 1e-3 for all three; each repeat runs
the three side by side in one process (rotating their order) and the figure is the median time. PyHessian
0.1 is the PyPI release: its single-batch mode takes the whole sample as one batch; it is expected to fail
on a timm ViT whose attention is fused (no double backward for SDPA), which is recorded, not hidden.
Results go to benchmarks/results/hessian_peers_<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import provenance, write_result
from torch import nn

from sharpvision import config, models
from sharpvision.analysis.core import sample_batches
from sharpvision.analysis.hessian import hessian_eigenvalues
from sharpvision.data import build_datasets


def ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> float:
    return hessian_eigenvalues(model, nn.functional.cross_entropy, [(x, y)], k=1, tol=tol)["eigenvalues"][0]


def pyhessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> float:
    from pyhessian import hessian
    h = hessian(model.eval(), nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    return float(h.eigenvalues(maxIter=100, tol=tol, top_n=1)[0][0])


def curvlinops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float) -> float:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh
    params = [p for p in model.eval().parameters() if p.requires_grad]
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False)
    return float(eigsh(op.to_scipy(), k=1, which="LA", tol=tol, return_eigenvectors=False)[0])


PEERS = {"sharpvision (Lanczos)": ours, "PyHessian 0.1 (power)": pyhessian, "curvlinops (eigsh)": curvlinops}


def measure(name: str, x: torch.Tensor, y: torch.Tensor, repeats: int, tol: float) -> dict:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=x.shape[-1], in_chans=x.shape[1]).to(x.device).eval()
    times: dict[str, list[float]] = {k: [] for k in PEERS}
    values: dict[str, float | str] = {}
    for r in range(repeats):
        order = list(PEERS)[r % len(PEERS):] + list(PEERS)[:r % len(PEERS)]
        for peer in order:
            if isinstance(values.get(peer), str):
                continue  # it failed once; it fails again
            t0 = time.perf_counter()
            try:
                values[peer] = PEERS[peer](model, x, y, tol)
            except Exception as e:  # a peer that cannot run this model is a result too
                values[peer] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            if x.is_cuda:
                torch.cuda.synchronize()
            times[peer].append(time.perf_counter() - t0)
    ref = values["curvlinops (eigsh)"]
    rows = {}
    for peer in PEERS:
        v = values[peer]
        ok = not isinstance(v, str)
        rows[peer] = {"lambda_max": v, "time_s_median": statistics.median(times[peer]) if ok else None,
                      "rel_diff_vs_curvlinops": abs(v - ref) / abs(ref) if ok and not isinstance(ref, str) else None}
    ours_t = rows["sharpvision (Lanczos)"]["time_s_median"]
    for row in rows.values():
        row["our_time_over_theirs"] = ours_t / row["time_s_median"] if row["time_s_median"] and ours_t else None
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "peers": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", default=["resnet_micro", "vit_micro"])
    p.add_argument("--sample", type=int, default=256, help="Fashion-MNIST training examples (one batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=.data/fashion-mnist")
    args = p.parse_args()
    cfg = config.from_dict(config.apply_overrides({"data": {"augment": "none"}}, args.overrides))
    (x, y), = sample_batches(build_datasets(cfg.data).train, args.sample, args.sample, seed=0, device=args.device)
    rows = [measure(name, x, y, args.repeats, args.tol) for name in args.models]
    for row in rows:
        for peer, r in row["peers"].items():
            t = f"{r['time_s_median']:.2f} s" if r["time_s_median"] else "-"
            ratio = f"ours/theirs {r['our_time_over_theirs']:.2f}" if r["our_time_over_theirs"] else ""
            value = r["lambda_max"] if isinstance(r["lambda_max"], str) else f"{r['lambda_max']:.5g}"
            print(f"{row['model']:<14} {peer:<24} lambda_max {value}  {t}  {ratio}")
    write_result({"benchmark": "hessian_peers", "figure": "top Hessian eigenvalue and time, same model and data",
                  **provenance(args.device), "sample": args.sample, "tol": args.tol, "repeats": args.repeats,
                  "results": rows}, f"hessian_peers_{args.device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
