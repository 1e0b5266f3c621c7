# mypy: allow-untyped-calls
"""In-memory process doubles: a reactor that records ``spawnProcess`` and a fake process transport.

The pattern is treq's ``local_httpbin`` tests: nothing is spawned, the test
ends "processes" by calling ``processEnded`` on the recorded protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, AnyStr

from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class FakeProcessState:
    """What happened to one fake process."""

    signals: list[str | int] = field(default_factory=list)
    stdin_closed: bool = False
    ended: bool = False


@implementer(IProcessTransport)
class FakeProcessTransport(StringTransport):
    """An ``IProcessTransport`` that records signals instead of sending them."""

    def __init__(self, state: FakeProcessState, pid: int) -> None:
        super().__init__()
        self.state = state
        self.pid: int | None = pid

    def closeStdin(self) -> None:
        """Record that standard input was closed."""
        self.state.stdin_closed = True

    def closeStdout(self) -> None:
        """Nothing to close."""

    def closeStderr(self) -> None:
        """Nothing to close."""

    def closeChildFD(self, descriptor: int) -> None:
        """Nothing to close."""

    def writeToChild(self, childFD: int, data: bytes) -> None:
        """Discard the data."""

    def signalProcess(self, signalID: str | int) -> None:
        """Record the signal; a process that has ended raises like the real one."""
        if self.state.ended:
            raise ProcessExitedAlready()
        self.state.signals.append(signalID)


@dataclass
class SpawnedProcess:
    """One recorded ``spawnProcess`` call."""

    protocol: IProcessProtocol
    executable: str
    args: list[str]
    env: Mapping[str, str] | None
    path: str | None
    child_fds: Mapping[int, Any] | None
    transport: FakeProcessTransport
    state: FakeProcessState

    def end(self, code: int | None = 0, signal: int | None = None) -> None:
        """End the process with an exit code or a signal."""
        self.state.ended = True
        self.transport.pid = None
        reason = ProcessTerminated(exitCode=code, signal=signal)
        self.protocol.processEnded(Failure(reason))


@implementer(IReactorProcess)
class MemoryProcessReactor(MemoryReactorClock):
    """A memory reactor with a clock that records spawned processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[SpawnedProcess] = []
        self.spawn_error: OSError | None = None
        self._next_pid = 1000

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport:
        """Record the call and connect the protocol to a fake transport."""
        if self.spawn_error is not None:
            raise self.spawn_error
        self._next_pid += 1
        state = FakeProcessState()
        transport = FakeProcessTransport(state, self._next_pid)
        self.spawned.append(
            SpawnedProcess(
                protocol=processProtocol,
                executable=str(executable),
                args=[str(a) for a in args],
                env={_text(k): _text(v) for k, v in env.items()} if env is not None else None,
                path=str(path) if path is not None else None,
                child_fds=childFDs,
                transport=transport,
                state=state,
            )
        )
        processProtocol.makeConnection(transport)
        return transport
