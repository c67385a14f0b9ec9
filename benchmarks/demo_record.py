"""Run ``sharpvision demo --fresh`` as a new user would, timed, and record its output for the README.

    python benchmarks/demo_record.py            # about 8 minutes on 2 CPU cores; writes results/demo_cpu.json
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import provenance, write_result


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="demo_record_"))
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).with_name("sharpvision")), "demo", "--fresh", "--quiet", "--out", str(out)]
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    record = json.loads((out / "demo.json").read_text())
    record |= {"benchmark": "demo", **provenance("cpu"), "demo_wall_time_s": seconds,
               "command": "sharpvision demo --fresh  (timed by python benchmarks/demo_record.py)"}
    write_result(record, "demo_cpu")
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
