"""Looking at processes through /proc, for tests that check what was started and what was killed."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (not gone, not a zombie awaiting its reaper)?

    A process can vanish between opening its ``stat`` and reading it (the
    read then fails with ESRCH): that is gone too.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
