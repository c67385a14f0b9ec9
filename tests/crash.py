"""Run ``sharpvision`` and SIGKILL this very process at a chosen point: the kill-and-resume tests' fault injector.

    python tests/crash.py POINT:N train RECIPE --out DIR ...

POINT is where the N-th occurrence kills the process (no cleanup, no ``finally``, like a power cut or the OOM killer):

- ``step``: right after the N-th training step, between checkpoints;
- ``write``: inside the N-th checkpoint, with ``model.safetensors`` half written;
- ``state``: inside the N-th checkpoint, after ``state.pt`` is written, before the manifest;
- ``rename``: after the N-th checkpoint folder is renamed into place, before ``latest`` points to it;
- ``latest``: after the N-th ``latest`` update, before old checkpoints are pruned.

Under torchrun, ``POINT:N@R`` kills only rank R; a worker restarted by torchrun (``--max-restarts``) runs clean.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from sharpvision import checkpoint
from sharpvision.cli import main
from sharpvision.train import session


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def counter(n: int):  # noqa: ANN201 - returns a "count one; is this the n-th?" function
    seen = [0]

    def tick() -> bool:
        seen[0] += 1
        return seen[0] == n
    return tick


def kill_after_step(point: str, tick) -> None:  # noqa: ANN001
    real_make_step = session.make_step

    def make_step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        step = real_make_step(*args, **kwargs)

        def killing_step(x, y):  # noqa: ANN001, ANN202
            out = step(x, y)
            if tick():
                die()
            return out
        return killing_step
    session.make_step = make_step


def kill_while_writing(point: str, tick) -> None:  # noqa: ANN001
    real_save_file, real_torch_save = checkpoint.save_file, checkpoint.torch.save

    def save_file(tensors, path):  # noqa: ANN001, ANN202
        real_save_file(tensors, path)
        if point == "write" and Path(path).name == "model.safetensors" and tick():
            os.truncate(path, Path(path).stat().st_size // 2)
            die()

    def torch_save(obj, path):  # noqa: ANN001, ANN202
        real_torch_save(obj, path)
        if point == "state" and tick():
            die()
    checkpoint.save_file = save_file
    checkpoint.torch.save = torch_save


def kill_after_rename(point: str, tick) -> None:  # noqa: ANN001
    real_fsync_dir = checkpoint._fsync_dir
    calls = [0]

    def fsync_dir(folder):  # noqa: ANN001, ANN202
        real_fsync_dir(folder)
        calls[0] += 1
        # save() syncs the folder after each of its two renames: the checkpoint folder's, then latest's
        if (calls[0] % 2 == 1) == (point == "rename") and tick():
            die()
    checkpoint._fsync_dir = fsync_dir


INSTALL = {"step": kill_after_step, "write": kill_while_writing, "state": kill_while_writing,
           "rename": kill_after_rename, "latest": kill_after_rename}


def install(point: str, n: int) -> None:
    if point not in INSTALL:
        raise SystemExit(f"crash.py: unknown point {point!r}")
    INSTALL[point](point, counter(n))


if __name__ == "__main__":
    where, count = sys.argv[1].split(":")
    count, _, rank = count.partition("@")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and rank in ("", os.environ.get("RANK", "0")):
        install(where, int(count))
    raise SystemExit(main(sys.argv[2:]))
