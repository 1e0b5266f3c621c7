"""A little disk space kept in reserve, so progress can still be saved on a full disk.

The student's files and the working copy share the container's storage: a
student's ``dd``, download or runaway log can fill it.  At start the
backend writes a reserve file (:data:`RESERVE_SIZE` bytes, really allocated)
in the state dir.  When a write that records progress or navigation fails
for lack of space, the store deletes the reserve and tries that write again
at once, in the same thread (:meth:`Reserve.release`), so the student's
position is saved even though the disk is full.  Once there is room again
(the reserve plus :data:`HEADROOM`), :meth:`Reserve.restore` writes the
reserve anew.

Everything here is blocking file I/O of a known small size: the store calls
it on its database thread, never on the reactor's.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

RESERVE_SIZE = 2 * 1024 * 1024
"""Bytes kept in reserve (a navigation or a check result needs a few KiB)."""
HEADROOM = 1024 * 1024
"""Free bytes needed beside the reserve before it is made again (else it would be released at once)."""
RESERVE_NAME = "space-reserve"


class Reserve:
    """The reserve file in the state dir: made, released on a full disk, made again."""

    def __init__(self, state_dir: Path, size: int = RESERVE_SIZE, headroom: int = HEADROOM) -> None:
        self.path = state_dir / RESERVE_NAME
        self.size = size
        self.headroom = headroom
        self.released = False
        """True from a release until the reserve is made again (read from the reactor thread)."""
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        """Is the reserve there (whole)?"""
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def release(self) -> bool:
        """Give the reserve's space back to the disk; True if there was a reserve to give."""
        with self._lock:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return False
            self.released = True
            return True

    def restore(self) -> bool:
        """Make the reserve (again) if the disk has room for it and some headroom; True if the disk is usable.

        Raises nothing for a full disk: False means "not yet".
        """
        with self._lock:
            stat = os.statvfs(self.path.parent)
            free = stat.f_bavail * stat.f_frsize
            if self.held:
                # Full while the reserve is still there (a write that may not use it failed): room again
                # once there is some headroom beside it.
                if free < self.headroom:
                    return False
                self.released = False
                return True
            if free < self.size + self.headroom:
                return False
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    _allocate(fd, self.size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except OSError as e:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    return False
                raise
            self.released = False
            return True


def _allocate(fd: int, size: int) -> None:
    """Really take ``size`` bytes of disk (a sparse file would reserve nothing)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    block = b"\0" * 65536
    written = 0
    while written < size:
        written += os.write(fd, block[: size - written])
