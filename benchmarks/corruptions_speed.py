"""Cost of the corruption suite: all 15 corruptions x 5 severities on the Fashion-MNIST test images, ours (batched
torch) against the reference (imagecorruptions-imaug, image by image, timed on a subsample and extrapolated).

    python benchmarks/corruptions_speed.py                  # all 10,000 test images; minutes on 2 CPU cores
    python benchmarks/corruptions_speed.py --images 20 --ref-n 2  # a quick check (writes ..._quick.json)
    python benchmarks/corruptions_speed.py --threads 1       # on cores shared with other work
    python benchmarks/corruptions_speed.py --device cuda

Ours runs at 28 px twice: with the 28px table (what ``corruption_accuracy`` uses) and with the imagenet table,
whose constants the reference uses at every size, so that ratio compares equal work. The reference gets each
grey image as R = G = B (its own ``corrupt`` does that conversion; its size check, 32 px and up, is bypassed by
calling its functions directly). One untimed warm-up batch first. JSON to
benchmarks/results/corruptions_speed_<device>[_quick].json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import provenance, synchronize, write_result

from sharpvision.data.datasets import FASHION_MNIST_FILES, FASHION_MNIST_ROOT
from sharpvision.data.idx import read_idx
from sharpvision.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt


def time_ours(images: torch.Tensor, table: str, batch_size: int, device: torch.device) -> dict[str, float]:
    """Seconds per corruption (all five severities) over ``images``, batch by batch on ``device``."""
    seconds = {}
    for name in CORRUPTIONS:
        gen = torch.Generator(device=device).manual_seed(0)
        corrupt(images[:batch_size].to(device), name, 1, gen, table)  # warm-up: caches, kernels, allocator
        synchronize(device)
        t0 = time.perf_counter()
        for severity in SEVERITIES:
            for start in range(0, len(images), batch_size):
                corrupt(images[start:start + batch_size].to(device), name, severity, gen, table)
        synchronize(device)
        seconds[name] = time.perf_counter() - t0
    return seconds


def time_reference(images_u8: np.ndarray, n_total: int) -> dict[str, float]:
    """Seconds per corruption the reference would take for ``n_total`` images, from its time on ``images_u8``."""
    from imagecorruptions import corruption_dict
    from PIL import Image

    np.random.seed(0)
    rgb = [Image.fromarray(np.repeat(img[..., None], 3, -1)) for img in images_u8]
    seconds = {}
    for name in CORRUPTIONS:
        fn = corruption_dict[name]
        np.uint8(fn(rgb[0], 1))  # warm-up (numba compiles glass blur's loop on first use)
        t0 = time.perf_counter()
        for severity in SEVERITIES:
            for img in rgb:
                np.uint8(fn(img, severity))
        seconds[name] = (time.perf_counter() - t0) * n_total / len(rgb)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", "--n", dest="n", type=int, default=10_000,
                   help="test images to corrupt (at most 10,000)")
    p.add_argument("--ref-n", type=int, default=100, help="images the reference is timed on, then extrapolated")
    p.add_argument("--batch-size", type=int, default=2_500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/corruptions_speed_<device>[_quick].json)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    u8 = read_idx(FASHION_MNIST_ROOT / FASHION_MNIST_FILES["test"][0], ndim=3)[:args.n]
    images = u8.unsqueeze(1).float() / 255
    ours = time_ours(images, "28px", args.batch_size, device)
    ours_imagenet = time_ours(images, "imagenet", args.batch_size, device)
    ref = time_reference(u8[:args.ref_n].numpy(), len(images))
    total, total_imagenet, total_ref = sum(ours.values()), sum(ours_imagenet.values()), sum(ref.values())
    result = {"benchmark": "corruptions_speed", **provenance(device), "n": len(images), "img_size": 28,
              "batch_size": args.batch_size, "reference_timed_on": min(args.ref_n, len(images)),
              "ours_28px_table_s": ours, "ours_imagenet_table_s": ours_imagenet, "reference_extrapolated_s": ref,
              "ours_28px_table_total_s": total, "ours_imagenet_table_total_s": total_imagenet,
              "reference_extrapolated_total_s": total_ref,
              "speedup_vs_reference_same_constants": total_ref / total_imagenet}
    for name in CORRUPTIONS:
        print(f"{name:<18} ours {ours[name]:8.2f} s (imagenet table {ours_imagenet[name]:8.2f} s)   "
              f"reference {ref[name]:9.2f} s")
    print(f"{'total':<18} ours {total:8.2f} s (imagenet table {total_imagenet:8.2f} s)   reference {total_ref:9.2f} s"
          f"   -> {total_ref / total_imagenet:.1f}x")
    quick = "_quick" if len(images) < 10_000 else ""
    write_result(result, f"corruptions_speed_{device.type}{quick}", args.out)


if __name__ == "__main__":
    main()
