"""One run per work folder: an exclusive ``fcntl.flock`` on ``DIR/.lock`` held for the whole run.

The kernel drops the lock when the process ends however it ends (SIGKILL, a crash, a power cut
ends the machine too), so a lock left behind never blocks the next run; the pid written into the
file only names the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from ..errors import UsageError


class FolderLock:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock or refuse in one line naming the folder and the process that holds it."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(f"{self.folder} is in use by another run (pid {holder}); wait for it "
                             "to finish, or pass another --work-dir") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self, *, remove: bool = False) -> None:
        """Let go; ``remove`` deletes the file first (the folder is being removed), while it is
        still held, so no other run can have locked the name that goes."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None
