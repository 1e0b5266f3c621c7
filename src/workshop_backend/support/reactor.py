"""The reactor, typed by what the daemon uses of it.

Twisted's reactor provides many interfaces; a parameter typed by one of them
cannot be given the others' methods, and ``Any`` checks nothing.
:class:`IBackendReactor` names the union the daemon's wiring needs; modules
that need less take the narrower interface (``IReactorTime`` for a clock).
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorProcess,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUNIX,
)


class IBackendReactor(
    IReactorCore, IReactorTime, IReactorThreads, IReactorFromThreads, IReactorProcess, IReactorTCP, IReactorUNIX
):
    """Everything the daemon asks of its reactor."""


def global_reactor() -> IBackendReactor:
    """The process's reactor (installed on first import), as the daemon sees it."""
    from twisted.internet import reactor

    return cast(IBackendReactor, reactor)
