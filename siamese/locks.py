"""One exclusive file lock between processes of one machine, for every place that needs one.

An `flock` is released by the kernel when its process dies, however it dies (kill -9 included),
so a crashed holder never leaves a lock taken. The lock file may be deleted by the process that
holds it (with the folder it protects): a waiter that then wins the flock of the deleted file sees
that it is no longer the file at that path and takes the new one instead.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

POLL_SECONDS = 0.05


class FileLock:
    """An exclusive lock on the file at `path` (created, with its folders, when missing), held until `release`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock; False if another process held it for `timeout` seconds (None: wait as long as it takes, 0: try once)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(descriptor)
                if time.monotonic() >= deadline:  # type: ignore[operator]  # only a timed wait raises
                    return False
                time.sleep(POLL_SECONDS)
                continue
            if self._still_at_path(descriptor):
                self._descriptor = descriptor
                return True
            os.close(descriptor)  # its holder deleted it: lock the file now at the path

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()

    def _still_at_path(self, descriptor: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            return False
