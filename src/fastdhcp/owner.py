"""One ``fastdhcp serve`` per state dir.

Two daemons on one store would both renew, settle and release the same leases:
the second would even release, as unfinished, the requests the first is still
acquiring. So ``serve`` takes an exclusive ``flock`` on ``serve.lock`` in the
state dir before it reads the store or opens its socket, and holds it until it
exits; the kernel drops it when the process dies, however it dies. The lock file
holds the owner's pid, for the message the next one prints. ``fastdhcp leases``
and ``status`` only read the store and take no lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Self

from .errors import FastDHCPError
from .store import prepare_state_dir

__all__ = ["LOCK_NAME", "OwnerError", "StateDirOwner"]

LOCK_NAME = "serve.lock"


class OwnerError(FastDHCPError):
    """Another process owns the state dir (or it cannot be locked)."""


class StateDirOwner:
    """The exclusive lock on a state dir, held while the object is open."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd = fd

    @classmethod
    def claim(cls, state_dir: str | os.PathLike[str]) -> StateDirOwner:
        """Lock ``state_dir`` (created 0700 if missing), or fail at once naming
        the process that holds it."""
        directory = Path(state_dir)
        prepare_state_dir(directory)
        path = directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise OwnerError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise OwnerError(
                    f"state dir {directory} is in use by fastdhcp serve ({who}): one serve "
                    "per state dir; stop that one first, or give --state-dir another directory"
                ) from None
            raise OwnerError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
