"""NTK condition number at initialisation of a suite's cells, measured again without their checkpoints: a cell's
initialisation is rebuilt from its recorded recipe and seed (as training and ``sharpvision analyze`` build it), so
the cells of a suite whose checkpoints are gone can have their ``ntk`` piece re-measured by the current analysis.

Why: the Mixer's head starts at zero in timm, its kernel at init then has rank embed_dim + 1 and kappa is infinite:
not a measurement. The NTK analysis now redraws a zero head as the ViT's is drawn before measuring; this re-measures
the committed cells with it. A cell's first measurement is kept (``analysis/ntk.first.json`` and the result's
``remeasured`` field), and a cell already re-measured is left alone. Check it first on a cell whose head is not
zero: its kappa must come back unchanged (paper-cpu's ViT and ResNet seed-0 cells did, to 3e-11 relative, the
difference of one thread against two).

    python studies/ntk_at_init.py benchmarks/results/paper_cpu --only model=vit --only seed=0   # the check
    python studies/ntk_at_init.py benchmarks/results/paper_cpu --only model=mixer               # the Mixer cells
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

WHY = ("re-measured from the recipe's initialisation (no checkpoint needed) by the current NTK analysis, which "
       "redraws a zero-initialised head as the ViT's is drawn")


def remeasure(cell_dir: Path, settings: dict[str, Any]) -> tuple[float | None, float | None]:
    """The cell's kappa at init before and after; writes the new ``ntk.json`` and keeps the first."""
    import torch

    from sharpvision import config as svconfig
    from sharpvision.analysis.run import Subject, analyze
    from sharpvision.runtime import Runtime, seeded
    from sharpvision.tasks import task_of

    cfg = svconfig.from_dict(yaml.safe_load((cell_dir / "run" / "config.yaml").read_text()))
    task, rt = task_of(cfg), Runtime.from_config(cfg)
    with seeded(cfg.seed):  # training's draws: the same data and the same initial weights
        bundle = task.build_data(cfg)
        model = task.build_model(cfg, bundle).eval().to(rt.device)
    subject = Subject(cell_dir.name, cfg, copy.deepcopy(model), model, bundle, rt.device, 0)
    with tempfile.TemporaryDirectory() as tmp:
        new = analyze(subject, ["ntk"], Path(tmp), progress=lambda _: None, **settings)["ntk"]
    old_path, first = cell_dir / "analysis" / "ntk.json", cell_dir / "analysis" / "ntk.first.json"
    old = json.loads(old_path.read_text())
    first.write_text(old_path.read_text())
    saved = json.loads(old_path.read_text())
    saved |= {k: new[k] for k in ("at_init", "at_init_full")}
    saved["remeasured"] = {"why": WHY, "command": shlex.join(["python", *sys.argv]),
                           "device": f"{rt.device.type} ({torch.get_num_threads()} threads)",
                           "torch": torch.__version__}
    old_path.write_text(json.dumps(saved, indent=2))
    result_path = cell_dir / "result.json"
    result = json.loads(result_path.read_text())
    before = result["analysis"].get("ntk_kappa_at_init")
    after = new["at_init"]["kappa"]
    result["analysis"]["ntk_kappa_at_init"] = after
    result["remeasured"] = {"ntk_kappa_at_init": {"before": before, "why": WHY}}
    result_path.write_text(json.dumps(result, indent=2) + "\n")  # as the suite runner writes it
    return old["at_init"]["kappa"], after


def wanted(labels: dict[str, str], only: list[str]) -> bool:
    by_axis: dict[str, set[str]] = {}
    for item in only:
        axis, value = item.split("=", 1)
        by_axis.setdefault(axis, set()).add(value)
    return all(labels.get(axis) in values for axis, values in by_axis.items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite_dir", type=Path, help="a suite directory whose cells have an analysis/ntk.json")
    p.add_argument("--only", action="append", default=[], help="AXIS=LABEL filters (values of one axis: any)")
    args = p.parse_args()
    if not (args.suite_dir / "suite.yaml").is_file():
        p.error(f"{args.suite_dir}: no suite.yaml (not a suite directory)")
    bad = [o for o in args.only if "=" not in o]
    if bad:
        p.error(f"--only {bad[0]!r}: expected AXIS=LABEL")
    suite = yaml.safe_load((args.suite_dir / "suite.yaml").read_text())
    settings = suite.get("analysis_settings", {})
    cells = sorted(d for d in (args.suite_dir / "cells").iterdir() if (d / "analysis" / "ntk.json").is_file()
                   and (d / "result.json").is_file()
                   and wanted(json.loads((d / "result.json").read_text())["labels"], args.only))
    if not cells:
        p.error(f"no finished cell of {args.suite_dir} with an NTK piece matches {' '.join(args.only) or 'any'}")
    for d in cells:
        if "remeasured" in json.loads((d / "analysis" / "ntk.json").read_text()):
            print(f"{d.name}: already re-measured, kept")
            continue
        before, after = remeasure(d, settings)
        print(f"{d.name}: kappa at init {before:.6g} -> {after:.6g}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
