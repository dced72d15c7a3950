"""Single writer per index folder: an exclusive, non-blocking ``flock`` on ``INDEX/.lock``.

The kernel releases the lock when the process dies (also on ``kill -9``), so a crashed writer never
leaves the folder locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from radsearch.errors import RadsearchError


class IndexLockedError(RadsearchError):
    """Another process is writing to the index."""


class WriterLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.handle = None

    def acquire(self) -> WriterLock:
        try:
            self.handle = open(self.path, "a+")
        except OSError as exc:
            raise RadsearchError(f"{self.path.parent}: cannot write to the index folder "
                                 f"({exc.strerror}); check its permissions.") from None
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "?"
            self.handle.close()
            self.handle = None
            raise IndexLockedError(f"{self.path.parent}: another process (pid {owner}) is "
                                   "writing to this index; wait for it to finish.") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
