"""NTK condition number at initialisation of a suite's cells, measured again without their checkpoints: a cell's
initialisation is rebuilt from its recorded recipe and seed (as training and ``sharpvision analyze`` build it), so
the cells of a suite whose checkpoints are gone can have their ``ntk`` piece re-measured by the current analysis.

Why: the Mixer's head starts at zero in timm, its kernel at init then has rank embed_dim + 1 and kappa is infinite:
not a measurement. The NTK analysis now redraws a zero head as the ViT's is drawn before measuring; this re-measures
the committed cells with it. A cell's first measurement is kept (``analysis/ntk.first.json`` and the result's
``remeasured`` field), and a cell whose result says it was re-measured is left alone. Check it first on a cell
whose head is not zero: its kappa must come back unchanged (paper-cpu's ViT and ResNet seed-0 AdamW cells did,
within 3e-11 relative, one thread against the suite's two: their ``ntk.first.json`` beside ``ntk.json``).

    python studies/ntk_at_init.py benchmarks/results/paper_cpu --only model=vit --only seed=0   # the check
    python studies/ntk_at_init.py benchmarks/results/paper_cpu --only model=mixer               # the Mixer cells
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

WHY = ("re-measured from the recipe's initialisation (no checkpoint needed) by the current NTK analysis, which "
       "redraws a zero-initialised head as the ViT's is drawn")


def remeasure(cell_dir: Path, settings: dict[str, Any]) -> tuple[float, float]:
    """The cell's kappa at init before and after. Writes the new ``ntk.json`` keeping the first as
    ``ntk.first.json`` (never replaced), then the result, last, so a run stopped between the two is redone."""
    import torch

    from sharpvision import config as svconfig
    from sharpvision.analysis.run import Subject, analyze
    from sharpvision.runs import build_initial

    cfg = svconfig.from_dict(yaml.safe_load((cell_dir / "run" / "config.yaml").read_text()))
    rt, bundle, model = build_initial(cfg)  # training's draws: the same data and the same initial weights
    subject = Subject(cell_dir.name, cfg, copy.deepcopy(model), model, bundle, rt.device, 0)
    with tempfile.TemporaryDirectory() as tmp:
        new = analyze(subject, ["ntk"], Path(tmp), progress=lambda _: None, **settings)["ntk"]
    path, first = cell_dir / "analysis" / "ntk.json", cell_dir / "analysis" / "ntk.first.json"
    if not first.exists():
        first.write_text(path.read_text())
    old = json.loads(first.read_text())
    path.write_text(json.dumps(old | {k: new[k] for k in ("at_init", "at_init_full")} | {"remeasured": {
        "why": WHY, "command": shlex.join(["python", *sys.argv]), "torch": torch.__version__,
        "device": f"{rt.device.type} ({torch.get_num_threads()} threads)"}}, indent=2))
    result_path = cell_dir / "result.json"
    result = json.loads(result_path.read_text())
    before, after = old["at_init"]["kappa"], new["at_init"]["kappa"]
    result["analysis"]["ntk_kappa_at_init"] = after
    result.setdefault("remeasured", {})["ntk_kappa_at_init"] = {
        "before": before if math.isfinite(before) else str(before), "why": WHY}  # strict JSON: "inf"
    result_path.write_text(json.dumps(result, indent=2) + "\n")  # as the suite runner writes it
    return before, after


def main() -> int:
    from sharpvision.experiments import load_suite
    from sharpvision.experiments.suite import SuiteError, select

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite_dir", type=Path, help="a suite directory whose cells have an analysis/ntk.json")
    p.add_argument("--only", action="append", default=[],
                   help="AXIS=LABEL[,LABEL...] filters, as sharpvision reproduce takes them")
    args = p.parse_args()
    if not (args.suite_dir / "suite.yaml").is_file():
        p.error(f"{args.suite_dir}: no suite.yaml (not a suite directory)")
    suite = load_suite(args.suite_dir / "suite.yaml")
    try:
        chosen = select(suite.cells(), args.only, None)
    except SuiteError as e:
        p.error(str(e))
    cells = [d for c in chosen if (d := args.suite_dir / "cells" / c.folder).joinpath("result.json").is_file()
             and (d / "analysis" / "ntk.json").is_file()]
    if not cells:
        p.error(f"no finished cell of {args.suite_dir} with an NTK piece matches {' '.join(args.only) or 'any'}")
    for d in cells:
        if "ntk_kappa_at_init" in json.loads((d / "result.json").read_text()).get("remeasured", {}):
            print(f"{d.name}: already re-measured, kept")
            continue
        before, after = remeasure(d, suite.analysis_settings)
        print(f"{d.name}: kappa at init {before:.6g} -> {after:.6g}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
