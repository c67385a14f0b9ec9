"""Each cell as a cluster job through submitit: on SLURM one job per cell (the way the ConvNeXt repository launches
its runs), or ``local`` subprocesses on this machine (all at once: for checking a setup, not for a 2-core box).

The jobs run :func:`~sharpvision.experiments.runner.run_cell`, so they share the suite directory's guarantees: a
finished cell is skipped, a preempted job's cell resumes from its checkpoint when resubmitted, and locks keep two
jobs off one cell. The directory must be on a filesystem the compute nodes share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharpvision.experiments.aggregate import aggregate, write_results
from sharpvision.experiments.runner import claim, run_cell
from sharpvision.experiments.suite import Cell, Suite, SuiteError


def submit_cells(suite: Suite, out: Path, cells: list[Cell], cluster: str, timeout_min: int = 240,
                 partition: str | None = None, gpus_per_node: int = 0,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Submit one job per cell, wait for them, and write the aggregate; a job that dies is reported, not raised."""
    try:
        import submitit
    except ImportError:
        raise SuiteError("--submit needs submitit: pip install 'sharpvision[cluster]'") from None
    claim(suite, out)
    executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster=cluster)
    executor.update_parameters(name=suite.name, timeout_min=timeout_min, gpus_per_node=gpus_per_node,
                               **({"slurm_partition": partition} if partition else {}))
    jobs = [executor.submit(run_cell, suite, cell, out / "cells" / cell.folder) for cell in cells]
    say(f"submitted {len(jobs)} job(s) to {executor.cluster}: logs in {out / 'submitit'}")
    for i, (job, cell) in enumerate(zip(jobs, cells), 1):
        try:
            status = job.result()
        except submitit.core.utils.UncompletedJobError as e:  # FailedJobError included: raised, timed out, killed
            status = f"job {job.job_id} failed ({str(e).strip().splitlines()[0]})"
        say(f"[{i}/{len(cells)}] {cell.key}: {status}")
    results = aggregate(suite, out)
    write_results(out, results)
    return results
