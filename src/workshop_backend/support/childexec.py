"""A tiny exec wrapper for children that need what ``spawnProcess`` lacks.

``reactor.spawnProcess`` cannot put a child in a new session (so that a
timeout can kill its whole process group, grandchildren included) nor ask the
kernel to kill it when the backend dies (``PR_SET_PDEATHSIG``, so that ttyd
never outlives a backend killed with SIGKILL).  So we spawn ourselves with a
few flags; this module sets them up and ``exec``s the real program, which
keeps the pid and hence the parent relationship.

Usage (what :func:`wrap` builds)::

    python -I -S .../workshop_backend/childexec.py [--setsid] [--pdeathsig PPID] -- PROG ARGS...

In a frozen bundle ``sys.executable`` is the bundle itself, whose entry point
dispatches ``--childexec`` to :func:`run` (see :mod:`workshop_backend.main`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
FROZEN_FLAG = "--childexec"


def wrap(argv: Sequence[str], *, new_session: bool = False, die_with_parent: bool = False) -> list[str]:
    """The argv that runs ``argv`` through this wrapper (argv[0] is the executable)."""
    flags: list[str] = []
    if new_session:
        flags.append("--setsid")
    if die_with_parent:
        flags += ["--pdeathsig", str(os.getpid())]
    if getattr(sys, "frozen", False):
        head = [sys.executable, FROZEN_FLAG]
    else:
        # By path, not -m: it needs only the standard library, and -I -S keep
        # the start-up of every wrapped child at a few milliseconds.
        head = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
    return [*head, *flags, "--", *argv]


def _set_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def run(args: Sequence[str]) -> int:
    """Parse the wrapper's flags, set them up, exec the program (no return on success)."""
    args = list(args)
    setsid = False
    parent: int | None = None
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag == "--setsid":
            setsid = True
        elif flag == "--pdeathsig" and args:
            parent = int(args.pop(0))
        else:
            print(f"childexec: unknown flag {flag!r}", file=sys.stderr)
            return 127
    if not args or len(args) < 2:
        print("childexec: no program to run", file=sys.stderr)
        return 127
    program = args[1:]
    if setsid:
        os.setsid()
    if parent is not None:
        _set_pdeathsig()
        if os.getppid() != parent:
            # The parent died before prctl took effect: nobody would reap us.
            return 1
    try:
        os.execvp(program[0], program)
    except OSError as e:
        print(f"childexec: cannot run {program[0]}: {e.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
