"""Small file-system helpers shared by the durable stores: directory locks
and directory fsync, the two things POSIX makes easy to get subtly wrong."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class DirectoryLock:
    """An exclusive ``flock`` on ``<directory>/<name>``.

    Two processes (or two objects in one process) writing the same store
    would each trust their own cached view of it and corrupt it. ``flock``
    locks belong to the open file description, so a second open in the same
    process conflicts too, the kernel drops the lock when the holder dies
    (``kill -9`` included), and a forked child shares its parent's lock
    rather than taking a new one.
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(exc.errno, f"{directory} is already in use") from exc
            raise

    def release(self) -> None:
        """Unlock; idempotent."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __del__(self) -> None:
        # An owner dropped without close() must not keep its directory locked.
        self.release()


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable: without this a
    power loss can forget that a freshly renamed file exists."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
