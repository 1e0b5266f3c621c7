"""Running a step's background setup script (contract section 3.1): a child process, bounded.

:class:`SetupRunner` runs one script the way validation runs a command
(:mod:`~workshop_backend.validation.runner`), with what a setup needs more:

- **Detached from every terminal.** The script runs in a new session (no
  controlling terminal), stdin is closed, and its output goes to a log file
  in the state dir (``setup/<step>.log``, the previous run's kept as
  ``.log.1``), never to a student's terminal.
- **In the workspace**, with the terminal's environment: the same ``cwd``
  and ``env`` as validation's commands.  The script is written to
  ``setup/<step>.sh`` and run by ``/bin/sh``, or by the interpreter its
  ``#!`` line names (``#!/bin/bash``, ``#!/usr/bin/env python3``): read by
  us, as the kernel would, so a ``noexec`` state dir does not matter.
- **Bounded.** At its timeout the whole process group is killed, and then
  every process that still carries this run's mark in its environment
  (``WORKSHOP_SETUP_RUN``, inherited by everything the script starts): a
  daemon that forked away with ``setsid`` goes too.  A script that ends in
  time may leave services running (``nohup server &`` is what setup scripts
  are for); they are not touched.  Output is read as it comes: at most
  :data:`LOG_CAP` bytes go to the log and the last :data:`TAIL_CAP` are
  kept for the status, the rest is counted and dropped, so a script that
  prints a gigabyte costs neither memory nor disk.
- **Dies with the backend**: the shell gets ``PR_SET_PDEATHSIG``, so a
  backend killed mid-run does not leave it running (the next start marks
  the run as interrupted, and the student can retry it).

The outcome is a :class:`ScriptOutcome` once the script has exited (or
could not start); what it left running may go on writing to the log until
it ends.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend.support import childexec
from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.validation.evaluate import clean_text, signal_name
from workshop_backend.validation.runner import kill_group

LOG_CAP = 1024 * 1024
"""Bytes of one run's output written to its log file; the rest is counted, not kept."""
TAIL_CAP = 8 * 1024
"""Bytes of the output's end kept for the status."""
TAIL_SHOWN = 2000
"""Characters of that tail the status shows (cleaned of escape sequences)."""
KILL_GRACE = 2.0
"""Seconds after the kill at a timeout before we stop waiting for the script to be reaped."""
RUN_MARK = "WORKSHOP_SETUP_RUN"
"""The environment variable that marks every process of one run (see :func:`sweep`)."""
SWEEP_ROUNDS = 5


@dataclass(frozen=True)
class ScriptOutcome:
    """How a background script ended."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    """Why it could not run at all (None: it ran)."""
    output: str = ""
    """The end of its output, cleaned, as the status shows it."""

    @property
    def ok(self) -> bool:
        """Exited with 0 in time."""
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def describe(self, timeout: float) -> str:
        """What happened, in a sentence for the student's page."""
        if self.error is not None:
            return f"The setup script could not run: {self.error}."
        if self.timed_out:
            return f"The setup script did not finish within {timeout:g} s and was stopped."
        if self.exit_code == 0:
            return "The setup script finished."
        if self.exit_code is not None:
            return f"The setup script failed (exit code {self.exit_code})."
        name = signal_name(self.signal)
        return f"The setup script was ended by {name}."


def interpreter(script: str) -> list[str]:
    """The command that runs a script file: its ``#!`` line (as the kernel reads it), else ``/bin/sh``.

    The kernel passes everything after the interpreter as one argument;
    so do we (``#!/usr/bin/env python3`` runs ``/usr/bin/env python3 FILE``).
    """
    if script.startswith("#!"):
        line = script[2:].split("\n", 1)[0].strip()
        if line:
            parts = line.split(None, 1)
            return parts
    return ["/bin/sh"]


def sweep(mark: str, own_pid: int, *, proc: str = "/proc", kill: Callable[[int, int], None] = os.kill) -> int:
    """SIGKILL every process whose environment carries ``RUN_MARK=mark``; how many were found.

    Runs in a thread (it reads ``/proc``).  Processes we may not read (other
    users') are skipped: they cannot have inherited our mark.  ``proc`` and
    ``kill`` are there for tests (a process table that holds still).
    """
    needle = f"{RUN_MARK}={mark}".encode("ascii")
    # A process killed in one round may still be there in the next (the
    # kernel has not torn it down yet, more so on a busy machine): it is
    # killed again, harmlessly, but counted once.  Rounds go on while they
    # find processes not seen before (children forked while we swept).
    killed: set[int] = set()
    for _ in range(SWEEP_ROUNDS):
        new = 0
        try:
            pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
        except OSError:
            break
        for pid in pids:
            if pid == own_pid:
                continue
            try:
                with open(f"{proc}/{pid}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    continue
                if pid not in killed:
                    killed.add(pid)
                    new += 1
        if not new:
            break
    return len(killed)


class SetupRunner:
    """Runs background setup scripts, one process group each, killed at their timeout.

    :param reactor: spawns processes, times the timeout, runs file work in its thread pool.
    :param cwd: the workspace (validation's default ``cwd``, where terminals start).
    :param env: the environment (the terminal's user's).
    :param log_dir: where ``<step>.sh`` and ``<step>.log`` go (``<state-dir>/setup``).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IBackendReactor,
        *,
        cwd: str,
        env: dict[str, str],
        log_dir: Path,
        clock: IReactorTime | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else IReactorTime(reactor)
        self._cwd = cwd
        self._env = dict(env)
        self._log_dir = log_dir
        self._running: dict[int, tuple[IProcessTransport, str]] = {}
        self._protocols: set[_ScriptProtocol] = set()

    def run(self, step_id: str, script: str, timeout: float) -> Deferred[ScriptOutcome]:
        """Run ``script`` for ``step_id``; fires with its outcome (never fails)."""
        return Deferred.fromCoroutine(self._run(step_id, script, timeout))

    def stop(self) -> None:
        """At shutdown: kill the scripts still running (their groups), stop reading what others left."""
        for pid, (transport, _) in list(self._running.items()):
            kill_group(pid, transport)
        for proto in list(self._protocols):
            if proto.transport is not None and proto.exited:
                proto.transport.loseConnection()

    async def _run(self, step_id: str, script: str, timeout: float) -> ScriptOutcome:
        pool = self._reactor.getThreadPool()
        try:
            script_path, log = await deferToThreadPool(self._reactor, pool, self._prepare, step_id, script)
        except OSError as e:
            return ScriptOutcome(error=f"cannot write its files in {self._log_dir}: {e.strerror or e}")
        workspace_ok = await deferToThreadPool(self._reactor, pool, os.path.isdir, self._cwd)
        if not workspace_ok:
            log.close()
            return ScriptOutcome(error=f"the workspace {self._cwd} does not exist")
        mark = secrets.token_hex(16)
        argv = childexec.wrap([*interpreter(script), str(script_path)], new_session=True, die_with_parent=True)
        env = {**self._env, RUN_MARK: mark}
        proto = _ScriptProtocol(log)
        try:
            transport = IReactorProcess(self._reactor).spawnProcess(proto, argv[0], argv, env=env, path=self._cwd)
        except OSError as e:
            log.close()
            return ScriptOutcome(error=e.strerror or str(e))
        pid = transport.pid
        assert pid is not None
        self._running[pid] = (transport, mark)
        self._protocols.add(proto)
        proto.ended.addBoth(lambda _: self._protocols.discard(proto))
        self.log.info(
            "setup of {step}: running {command} (timeout {timeout:g} s, pid {pid})",
            step=step_id,
            command=shlex.join([*interpreter(script), script_path.name]),
            timeout=timeout,
            pid=pid,
        )
        timers: list[IDelayedCall] = []
        timed_out = False
        swept: Deferred[int] | None = None

        def on_timeout() -> None:
            nonlocal timed_out, swept
            timed_out = True
            kill_group(pid, transport)
            # What left the group (setsid, a double fork) still carries the mark.
            d = deferToThreadPool(self._reactor, pool, sweep, mark, os.getpid())
            d.addCallback(lambda n: self.log.info("setup of {step}: killed {n} escaped process(es)", step=step_id, n=n))
            d.addErrback(lambda f: self.log.failure("sweeping the setup of {step} failed", f, step=step_id))
            swept = d
            # Reaped at once normally; if not, do not wait for ever.
            timers.append(self._clock.callLater(KILL_GRACE, proto.give_up))

        timers.append(self._clock.callLater(timeout, on_timeout))
        try:
            await proto.exited_d
            if swept is not None:
                await swept
            # Its output to the end, unless something it left running holds the pipe open.
            settled: Deferred[None] = Deferred()

            def settle(_: object = None) -> None:
                if not settled.called:
                    settled.callback(None)

            proto.ended.addBoth(settle)
            timers.append(self._clock.callLater(KILL_GRACE, settle))
            await settled
        finally:
            self._running.pop(pid, None)
            for timer in timers:
                if timer.active():
                    timer.cancel()
        reason = proto.reason
        outcome = ScriptOutcome(
            exit_code=getattr(reason, "exitCode", None),
            signal=getattr(reason, "signal", None),
            timed_out=timed_out,
            output=clean_text(bytes(proto.tail), TAIL_SHOWN),
        )
        self.log.info(
            "setup of {step}: {what}", step=step_id, what=outcome.describe(timeout), ok=outcome.ok, timed_out=timed_out
        )
        return outcome

    def _prepare(self, step_id: str, script: str) -> tuple[Path, IO[bytes]]:
        """In a thread: the script file, the previous log kept aside, a fresh log opened."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        script_path = self._log_dir / f"{step_id}.sh"
        script_path.write_text(script, encoding="utf-8")
        log_path = self._log_dir / f"{step_id}.log"
        if log_path.exists():
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
        return script_path, log_path.open("wb")


class _ScriptProtocol(ProcessProtocol):
    """Output to the log (capped) and a tail; ``exited_d`` fires when the script exits."""

    def __init__(self, log: IO[bytes]) -> None:
        self.log = log
        self.written = 0
        self.dropped = 0
        self.tail = bytearray()
        self.exited = False
        self.reason: BaseException | None = None
        self.exited_d: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.tail += data
        if len(self.tail) > TAIL_CAP:
            del self.tail[: len(self.tail) - TAIL_CAP]
        room = LOG_CAP - self.written
        if room > 0 and not self.log.closed:
            # A local file, at most LOG_CAP bytes per run in all: buffered writes, like a log observer's.
            self.log.write(data[:room])
            self.written += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def processExited(self, reason: Failure) -> None:
        self.exited = True
        self.reason = reason.value
        if not self.log.closed:
            self.log.flush()
        if not self.exited_d.called:
            self.exited_d.callback(None)

    def give_up(self) -> None:
        """The script was killed but not reaped in time: stop waiting (and reading)."""
        if self.transport is not None:
            self.transport.loseConnection()
        if not self.exited_d.called:
            self.exited_d.callback(None)

    def processEnded(self, reason: Failure) -> None:
        if self.reason is None:
            self.reason = reason.value
        if not self.log.closed:
            if self.dropped:
                self.log.write(f"\n[{self.dropped} more bytes of output were not kept]\n".encode())
            self.log.close()
        if not self.exited_d.called:
            self.exited_d.callback(None)
        self.ended.callback(None)


__all__ = ["LOG_CAP", "RUN_MARK", "ScriptOutcome", "SetupRunner", "interpreter", "sweep"]
