"""Start-up time of the ``sharpvision`` command: how long a user waits before anything happens.

    python benchmarks/cli_startup.py                          # this checkout
    python benchmarks/cli_startup.py --before /path/to/old/src   # and an older source tree, interleaved

Each command runs in a fresh interpreter (``python -m sharpvision ...``), trees alternated run by run, median of
``--repeats``; also records which heavy modules each command imported. JSON to
benchmarks/results/cli_startup_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import provenance, write_result

COMMANDS = {"import sharpvision": ["-c", "import sharpvision"],
            "sharpvision --help": ["-m", "sharpvision", "--help"],
            "sharpvision models": ["-m", "sharpvision", "models"]}
HEAVY = ("torch", "timm", "matplotlib", "tensorboard", "sharpvision.analysis", "sharpvision.train")


def run_once(src: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def heavy_imports(src: Path, args: list[str]) -> list[str]:
    """The heavy modules loaded by the command (run in-process via runpy, then sys.modules is read)."""
    if args[0] == "-c":
        code = f"{args[1]}\n"
    else:
        code = f"import sys, runpy; sys.argv = {['sharpvision', *args[2:]]!r}\ntry:\n    runpy.run_module('sharpvision', run_name='__main__')\nexcept SystemExit:\n    pass\n"  # noqa: E501
    code += f"import sys; print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(src)}, check=True,
                         capture_output=True, text=True)
    return next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("HEAVY:"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, help="an older source tree (its src/ folder) to compare with")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    trees = {"now": Path(__file__).resolve().parents[1] / "src"}
    if args.before:
        trees["before"] = args.before.resolve()
    times: dict[str, dict[str, list[float]]] = {t: {c: [] for c in COMMANDS} for t in trees}
    for _ in range(args.repeats):  # interleaved: both trees see the same machine state
        for name, cmd in COMMANDS.items():
            for tree, src in trees.items():
                times[tree][name].append(run_once(src, cmd))
    result = {"benchmark": "cli_startup", **provenance("cpu"), "repeats": args.repeats, "trees": {}}
    for tree, src in trees.items():
        result["trees"][tree] = {name: {"median_s": statistics.median(times[tree][name]),
                                        "heavy_modules": heavy_imports(src, cmd)} for name, cmd in COMMANDS.items()}
    if args.before:
        before, now = result["trees"]["before"], result["trees"]["now"]
        result["speedup"] = {name: before[name]["median_s"] / now[name]["median_s"] for name in COMMANDS}
    for tree, rows in result["trees"].items():
        for name, row in rows.items():
            print(f"{tree:>6}  {name:<20} {row['median_s']:.3f} s  imports {', '.join(row['heavy_modules']) or '-'}")
    write_result(result, "cli_startup_cpu")


if __name__ == "__main__":
    main()
