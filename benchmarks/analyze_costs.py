"""What each ``sharpvision analyze`` piece costs on a run: the first look (no ``--what``), then ``--what all``.

    python benchmarks/analyze_costs.py runs/geometry/tiny_vit runs/geometry/vit_40ep

For each run, in one process: the first look into a fresh folder, timed from loading the checkpoint to the last
figure; then ``--what all`` into the same folder, which resumes the first look's pieces and adds the others (its
time is the first look's plus the rest's, as a user who asks for everything at once would wait). Each piece's
seconds are the ones its JSON records (compute only), with its products or points. The CPU load average before
and after is recorded: on a shared machine the wall times grow with it. Results:
benchmarks/results/analyze_costs_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import provenance, write_result

from sharpvision.analysis.run import FIRST_LOOK, PIECES, execute, load_subject, plan


def _work(result: dict[str, Any]) -> dict[str, Any]:
    """The units of work a piece's result records, where it records them."""
    keys = ("matvecs", "probes", "samples")
    found = {k: result[k] for k in keys if isinstance(result.get(k), int)}
    if "plane" in result:
        found["points"] = len(result["plane"]["alphas"]) ** 2
    if "alphas" in result:
        found["points"] = len(result["alphas"])
    return found


def measure(run: str, out: Path) -> dict[str, Any]:
    """First look, then everything, on ``run``; every piece's seconds and work."""
    times, loads = {}, [os.getloadavg()[0]]
    pieces: dict[str, Any] = {}
    for label, what in (("first_look", list(FIRST_LOOK)), ("all", list(PIECES))):
        start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        subject = load_subject(run)
        what = [w for w in what if w != "attention" or _has_attention(subject)]  # as --what all does
        results = execute(plan(subject, what, out), progress=lambda line: print(line, flush=True), bars=False)
        end = resource.getrusage(resource.RUSAGE_SELF)
        times[label] = {"wall_s": time.perf_counter() - start,
                        "cpu_s": end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime}
        for name, r in results.items():
            pieces.setdefault(name, {"seconds": r["seconds"], "first_look": name in FIRST_LOOK, **_work(r)})
        loads.append(os.getloadavg()[0])
    times["all"]["wall_s"] += times["first_look"]["wall_s"]  # the second call resumed the first look's pieces
    times["all"]["cpu_s"] += times["first_look"]["cpu_s"]
    settings = results["hessian"]["analyze_settings"]
    return {"run": run, "model": subject.cfg.model.name, "epoch": subject.epoch,
            "train_examples": len(subject.bundle.train_plain), "sample": settings["sample"],
            "times": times, "pieces": pieces, "load_average_1min": loads}


def _has_attention(subject: Any) -> bool:
    from sharpvision import models
    return models.family(subject.cfg.model.name) == "vit"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (trained with sharpvision train)")
    p.add_argument("--out", help="write the JSON here instead of benchmarks/results/")
    args = p.parse_args()
    rows = []
    for run in args.runs:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(run, Path(folder)))
        print(rows[-1]["times"], flush=True)
    write_result({"benchmark": "analyze_costs", **provenance("cpu"), "threads": torch.get_num_threads(),
                  "runs": rows}, "analyze_costs_cpu", args.out)


if __name__ == "__main__":
    main()
