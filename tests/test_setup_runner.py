"""Background setup scripts with a real ``/bin/sh`` (:class:`~workshop_backend.validation.setup.SetupRunner`).

Detached from every terminal, in the workspace, output to the log (capped)
and never anywhere else, the whole process group killed at the timeout,
daemons that fled the group too, nothing left running.  The real reactor;
every wait is on the run's own Deferred or (for a killed process to be
reaped by the system) a bounded poll of ``/proc``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from tests.processes import alive
from workshop_backend.support.reactor import global_reactor
from workshop_backend.validation.setup import LOG_CAP, RUN_MARK, ScriptOutcome, SetupRunner, interpreter, sweep


class RunnerTestCase(TestCase):
    """A workspace, a state dir, a runner."""

    timeout = 60

    def setUp(self) -> None:
        root = Path(self.mktemp()).resolve()
        self.workspace = root / "workspace"
        self.workspace.mkdir(parents=True)
        self.logs = root / "state" / "setup"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "WORKSHOP_TEST": "yes"}
        self.runner = SetupRunner(global_reactor(), cwd=str(self.workspace), env=env, log_dir=self.logs)

    async def run_script(self, script: str, timeout: float = 30.0, step: str = "step") -> ScriptOutcome:
        """Run and wait for the outcome."""
        return await self.runner.run(step, script, timeout)

    def log(self, step: str = "step") -> str:
        """The run's log file."""
        return (self.logs / f"{step}.log").read_text(errors="replace")

    async def gone(self, pid: int) -> None:
        """Wait (at most 10 s) until the system has reaped a killed process."""
        for _ in range(200):
            if not alive(pid):
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"process {pid} is still running")


class RunTests(RunnerTestCase):
    """Where and how a script runs."""

    async def test_workspace_env_and_log(self) -> None:
        """It runs in the workspace with the given environment; stdout and stderr go to the log."""
        script = 'pwd; echo "home=$HOME test=$WORKSHOP_TEST"; echo oops >&2'
        outcome = await self.run_script(script)
        self.assertTrue(outcome.ok)
        self.assertEqual((outcome.exit_code, outcome.timed_out, outcome.error), (0, False, None))
        log = self.log()
        self.assertIn(str(self.workspace), log)
        self.assertIn("test=yes", log)
        self.assertIn("oops", log)
        self.assertEqual(
            (self.logs / "step.sh").read_text(), 'pwd; echo "home=$HOME test=$WORKSHOP_TEST"; echo oops >&2'
        )

    async def test_detached_from_terminals(self) -> None:
        """No controlling terminal (opening /dev/tty fails), stdin at EOF (a read does not hang),
        its own session (it leads its process group)."""
        script = (
            "if (exec </dev/tty) 2>/dev/null; then echo HAS_TTY; else echo NO_TTY; fi\n"
            "read line; echo read=$?\n"
            "set -- $(cut -d')' -f2 /proc/$$/stat); echo pgrp=$4 pid=$$\n"
        )
        outcome = await self.run_script(script)
        log = self.log()
        self.assertIn("NO_TTY", log)
        self.assertIn("read=1", log)
        found = re.search(r"pgrp=(\d+) pid=(\d+)", log)
        assert found is not None, log
        self.assertEqual(found.group(1), found.group(2))
        self.assertTrue(outcome.ok)

    async def test_failure(self) -> None:
        """A non-zero exit: failed, with the code and the end of its output."""
        outcome = await self.run_script("echo something went wrong; exit 3")
        self.assertFalse(outcome.ok)
        self.assertEqual(outcome.exit_code, 3)
        self.assertEqual(outcome.output, "something went wrong")
        self.assertEqual(outcome.describe(300), "The setup script failed (exit code 3).")

    async def test_shebang(self) -> None:
        """A ``#!`` line names the interpreter (read by us: a noexec state dir does not matter)."""
        python = shutil.which("python3")
        if python is None:
            self.skipTest("no python3 on PATH")
        outcome = await self.run_script(f"#!{python}\nimport os\nprint('python in', os.getcwd())\n")
        self.assertTrue(outcome.ok)
        self.assertIn(f"python in {self.workspace}", self.log())
        self.assertEqual(interpreter("#!/usr/bin/env python3 -u\nx"), ["/usr/bin/env", "python3 -u"])
        self.assertEqual(interpreter("echo hi"), ["/bin/sh"])

    async def test_missing_workspace(self) -> None:
        """A workspace that is not there: the script cannot run, and says why."""
        self.workspace.rmdir()
        outcome = await self.run_script("true")
        self.assertEqual(outcome.error, f"the workspace {self.workspace} does not exist")
        self.assertIn("could not run", outcome.describe(300))

    async def test_previous_log_kept(self) -> None:
        """A second run (a retry) keeps the first run's log as ``.log.1``."""
        await self.run_script("echo first")
        await self.run_script("echo second")
        self.assertEqual(self.log(), "second\n")
        self.assertEqual((self.logs / "step.log.1").read_text(), "first\n")

    async def test_services_it_starts_keep_running(self) -> None:
        """A script that ends in time may leave a service running (that is what setup is for)."""
        outcome = await self.run_script("sleep 300 >/dev/null 2>&1 & echo $! > service.pid")
        self.assertTrue(outcome.ok)
        pid = int((self.workspace / "service.pid").read_text())
        self.addCleanup(lambda: os.kill(pid, 9) if alive(pid) else None)
        self.assertTrue(alive(pid))


class BoundTests(RunnerTestCase):
    """Bad scripts: never ending, forking daemons, printing without end.

    The timeout is timed by a Clock the test advances once the script has
    started what it starts (it writes their pids first), so a busy machine
    cannot make the kill come before the script has done anything.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workspace)}
        self.runner = SetupRunner(
            global_reactor(), cwd=str(self.workspace), env=env, log_dir=self.logs, clock=self.clock
        )

    async def started(self, *names: str) -> list[int]:
        """Wait (at most 30 s) until the script wrote these pid files; their pids."""
        for _ in range(600):
            texts = [(self.workspace / n).read_text().strip() if (self.workspace / n).exists() else "" for n in names]
            if all(texts):
                return [int(t) for t in texts]
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"the script never wrote {names}")

    async def timed_out(self, script: str, *names: str) -> tuple[ScriptOutcome, list[int]]:
        """Run ``script``, wait for its pid files, let its 60 s run out; the outcome and the pids."""
        running = self.runner.run("step", script, 60)
        pids = await self.started(*names)
        self.clock.advance(60)
        return await running, pids

    async def test_timeout_kills_the_group(self) -> None:
        """At the timeout the shell and what it started in its group are killed."""
        outcome, pids = await self.timed_out(
            "sleep 300 & echo $! > child.pid; echo $$ > shell.pid; sleep 300", "child.pid", "shell.pid"
        )
        self.assertTrue(outcome.timed_out)
        self.assertFalse(outcome.ok)
        self.assertEqual(outcome.describe(60), "The setup script did not finish within 60 s and was stopped.")
        for pid in pids:
            await self.gone(pid)

    async def test_forked_daemon_is_killed_too(self) -> None:
        """A daemon that left the group (``setsid``, its own output) is found by the run's mark and killed."""
        script = "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &\nsleep 300\n"
        outcome, pids = await self.timed_out(script, "daemon.pid")
        self.assertTrue(outcome.timed_out)
        await self.gone(pids[0])

    async def test_daemon_holding_the_output_is_killed(self) -> None:
        """One that keeps the script's stdout open does not keep the run (or its reader) alive."""
        outcome, pids = await self.timed_out(
            "setsid sh -c 'echo $$ > held.pid; exec sleep 300' &\nsleep 300\n", "held.pid"
        )
        self.assertTrue(outcome.timed_out)
        await self.gone(pids[0])

    async def test_prints_without_end(self) -> None:
        """Megabytes of output: the log keeps the first LOG_CAP bytes and says how much more there was;
        the status gets a short tail."""
        outcome = await self.run_script("head -c 5000000 /dev/zero | tr '\\0' x; echo; echo THE-END")
        self.assertTrue(outcome.ok)
        size = (self.logs / "step.log").stat().st_size
        self.assertGreaterEqual(size, LOG_CAP)
        self.assertLess(size, LOG_CAP + 200)
        self.assertIn("more bytes of output were not kept", self.log()[-200:])
        self.assertTrue(outcome.output.endswith("THE-END"))
        self.assertLessEqual(len(outcome.output), 2001)

    async def test_stop_kills_a_running_script(self) -> None:
        """At shutdown the runner kills what still runs."""
        running = self.runner.run("step", "echo $$ > shell.pid; sleep 300", 300)
        for _ in range(200):
            if (self.workspace / "shell.pid").exists() and (self.workspace / "shell.pid").read_text().strip():
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.runner.stop()
        outcome = await running
        self.assertEqual(outcome.signal, 9)
        self.assertEqual(outcome.describe(300), "The setup script was ended by signal 9 (SIGKILL).")


class SweepTests(RunnerTestCase):
    """``sweep`` alone: every process that carries the mark, and only those."""

    def test_only_marked(self) -> None:
        """A marked process is killed, an unmarked one (and we ourselves) left alone."""
        env = {"PATH": os.environ.get("PATH", "/bin:/usr/bin")}
        # Marks of this run only: another run of the suite on the machine has its own.
        mine, theirs = f"mark-{uuid.uuid4().hex}", f"mark-{uuid.uuid4().hex}"
        marked = subprocess.Popen(["sleep", "300"], env={**env, RUN_MARK: mine})
        other = subprocess.Popen(["sleep", "300"], env={**env, RUN_MARK: theirs})
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        self.assertEqual(sweep(mine, os.getpid()), 1)
        self.assertEqual(marked.wait(timeout=30), -9)
        self.assertIsNone(other.poll())
        self.assertEqual(sweep("no-such-mark", os.getpid()), 0)

    def test_counted_once(self) -> None:
        """A killed process still listed in the next round (not torn down yet) is counted once;
        a child that appears while we sweep is found in the next round."""
        proc = Path(self.mktemp())

        def process(pid: int, mark: str) -> None:
            (proc / str(pid)).mkdir(parents=True)
            (proc / str(pid) / "environ").write_bytes(f"PATH=/bin\0{RUN_MARK}={mark}\0".encode())

        process(100, "m")
        process(101, "other")
        process(os.getpid(), "m")  # ourselves: never
        kills: list[int] = []

        def kill(pid: int, sig: int) -> None:
            kills.append(pid)
            if len(kills) == 1:
                process(102, "m")  # forked by 100 just before it died

        self.assertEqual(sweep("m", os.getpid(), proc=str(proc), kill=kill), 2)
        # Round 1 kills 100 (and 102 appears); round 2 kills 100 again (still there) and 102; round 3
        # finds nothing new and stops.
        self.assertEqual(sorted(kills), [100, 100, 100, 102, 102])
