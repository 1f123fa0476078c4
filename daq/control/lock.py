"""One system per data directory: an exclusive lock on ``<data dir>/nudaq.lock``.

``nudaq up`` takes the lock (flock) before it starts anything and writes its pid into the
file. Its children inherit the locked file, so the lock holds until the last of them has
exited: a second ``nudaq up`` on the same directory is refused at once, naming the pid, also
while the processes of a system whose ``nudaq up`` died are still stopping.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from daq.core.errors import RunControlError

LOCK_FILE = "nudaq.lock"


class DataDirLock:
    """The held lock of one data directory (released when every holder has exited)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunControlError(
                f"data directory {data_dir} is in use by nudaq up (pid {holder}) or by the"
                " processes it started: stop that system first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        """Give up this process's hold of the lock."""
        os.close(self.fd)
