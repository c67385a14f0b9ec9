"""A claim on one cell, so several processes or machines sharing a suite directory never train it twice.

The lock is a file created with O_EXCL (atomic on local filesystems and NFSv3+), holding its owner's host and
pid, and touched by a heartbeat while the cell runs. A lock is stale, and is taken over, when its owner is a dead
process on this host or its heartbeat is older than ``stale_after`` seconds (a machine that went away).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path


class CellLock:
    def __init__(self, path: Path, stale_after: float = 600.0) -> None:
        self.path, self.stale_after = path, stale_after
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock (taking over a stale one); False when another live owner holds it."""
        for _ in range(2):  # a second try after clearing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._clear_if_stale():
                    return False
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()
            return True
        return False

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            os.utime(self.path)

    def held(self) -> bool:
        """Whether a live owner holds the lock now (read only: a stale lock is left for ``acquire`` to take over)."""
        return self.path.exists() and not self._stale()

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):  # vanished, or half written by an owner that is creating it right now
            return not self.path.exists()
        dead_here = owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))
        return dead_here or age > self.stale_after

    def _clear_if_stale(self) -> bool:
        if not self._stale():
            return False
        moved = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:  # rename first, so of two processes clearing the same stale lock only one removes it
            self.path.rename(moved)
            moved.unlink()
        except FileNotFoundError:
            pass
        return True


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
