"""Blanking a secret in this process's own environment block.

``/proc/<pid>/environ`` shows the environment a process was started with,
read from its memory, to anything running as the same user: the student's
shell runs as the backend's user, so ``WORKSHOP_TOKEN`` would be readable
there for as long as the backend runs.  ``os.environ`` changes (``unsetenv``)
do not touch that block; this overwrites the value in place, once the token
has been read.  Linux only; elsewhere (or if the block cannot be found) it
does nothing and says so.  A token file (``WORKSHOP_TOKEN_FILE``) avoids the
question altogether.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from pathlib import Path


def blank_environment(names: Iterable[str]) -> bool:
    """Overwrite the values of ``names`` in the initial environment block with ``x``; True if it could look."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start and env_end (fields 50 and 51 of stat)
    except (OSError, IndexError, ValueError):
        return False
    if not 0 < start < end:
        return False
    block = ctypes.string_at(start, end - start)
    for name in names:
        key = name.encode() + b"="
        offset = 0
        while (found := block.find(key, offset)) != -1:
            if found == 0 or block[found - 1] == 0:
                value = found + len(key)
                length = block.find(b"\0", value)
                length = (len(block) if length == -1 else length) - value
                ctypes.memset(start + value, ord("x"), length)
            offset = found + len(key)
    return True
