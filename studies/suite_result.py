"""Copy a finished suite's aggregate into benchmarks/results/ with the device, versions and command, so the docs
can quote it (scripts/docs_figures.py renders every ``suite_*`` result).

    python studies/suite_result.py configs/suites/pilot-noise.yaml runs/pilot_noise suite_pilot_noise_cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from common import provenance, write_result

from sharpvision.experiments import load_suite
from sharpvision.experiments.aggregate import aggregate


def best_val_epoch(curve: list[dict]) -> list[int] | None:
    """[the epoch (from 1) of a cell's best validation accuracy, its epochs]; the curves themselves stay in the
    cells' result.json (copying them here made this file larger than a results file may be)."""
    val = [(r["val_accuracy"], r["epoch"] + 1) for r in curve if "val_accuracy" in r]
    return [max(val)[1], len(curve)] if val else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite_file", help="the suite sharpvision reproduce ran")
    p.add_argument("suite_dir", type=Path, help="its --out folder")
    p.add_argument("name", help="result name, e.g. suite_pilot_noise_cpu")
    args = p.parse_args()
    # the aggregate of the cells finished so far (results.json is written only when a reproduce call ends)
    results = aggregate(load_suite(args.suite_dir / "suite.yaml"), args.suite_dir)
    cells = sorted((args.suite_dir / "cells").glob("*/result.json"))
    best = {r["cell"]: best_val_epoch(r["curve"]) for r in (json.loads(c.read_text()) for c in cells)}
    device = json.loads(cells[0].read_text())["summary"]["device"] if cells else "none"
    record = {"benchmark": "suite", **provenance("cpu"), "device": device,
              "definition": yaml.safe_load((args.suite_dir / "suite.yaml").read_text()), **results,
              "best_val_epoch": {cell: b for cell, b in best.items() if b}}
    record["command"] = f"sharpvision reproduce {args.suite_file} --out {args.suite_dir} && {record['command']}"
    write_result(record, args.name)


if __name__ == "__main__":
    main()
