"""What "nothing lost" costs: writing and reading a verified checkpoint against a bare torch.save / torch.load.

    python benchmarks/checkpoint_cost.py [--model vit_s16] [--repeats 5] [--out FILE]

A checkpoint (checkpoint.py) is safetensors weights + a weights_only state file + a manifest of sha256 sums,
each file fsynced, the folder renamed into place. The baseline writes the same weights and optimizer state with
one torch.save (no fsync, no checksum) and reads them back with torch.load(weights_only=True). Both run on the
same model with a stepped AdamW state (2 moments per weight), interleaved, medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import provenance, write_result

from sharpvision import checkpoint as ckpt
from sharpvision import models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_s16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()
    model = models.create(args.model, num_classes=1000, img_size=224, in_chans=3)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(1, 3, 224, 224)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "loop": {"epoch": 1, "step": 100}}
    times: dict[str, list[float]] = {k: [] for k in ("ours_save", "bare_save", "ours_load", "bare_load")}
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        folder, bare = Path(tmp) / "checkpoints", Path(tmp) / "bare.pt"
        for i in range(args.repeats):
            t0 = time.perf_counter()
            ckpt.save(folder, i, model.state_dict(), None, state, {"epoch": 1, "config": {}}, keep=1)
            t1 = time.perf_counter()
            torch.save({"model": model.state_dict(), **state}, bare)
            t2 = time.perf_counter()
            ckpt.load(folder)
            t3 = time.perf_counter()
            torch.load(bare, weights_only=True)
            t4 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key].append(dt)
        size = sum(f.stat().st_size for f in ckpt.resolve(folder).iterdir())
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {**provenance("cpu"), "model": args.model, "params": sum(p.numel() for p in model.parameters()),
              "checkpoint_mb": size / 2**20, "median_s": med,
              "save_ratio": med["ours_save"] / med["bare_save"], "load_ratio": med["ours_load"] / med["bare_load"],
              "repeats": args.repeats}
    print(f"{args.model}: {size / 2**20:.0f} MB; save {med['ours_save']:.2f} s vs {med['bare_save']:.2f} s bare "
          f"({result['save_ratio']:.2f}x), load {med['ours_load']:.2f} s vs {med['bare_load']:.2f} s "
          f"({result['load_ratio']:.2f}x)")
    write_result(result, "checkpoint_cost_cpu", args.out)


if __name__ == "__main__":
    main()
