"""Setup scripts and assets through the real daemon (a process, real ttyd, real ``/bin/sh``, loopback HTTP).

The background script of the step the container starts on runs once (its
file appears, the status says ``done``, its output is in the state dir's
log), a restart on the same working copy does not run it again, the
foreground script is given out once; a script that never ends and forks a
daemon is stopped at its timeout with nothing left running, and the status
says so; a large asset streams over TCP to a client without credentials.

Waits are on the daemon's log lines and bounded polls of its status.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests import daemon as d
from tests import distributions
from tests.distributions import StepDef, file_rule
from tests.processes import alive
from tests.test_daemon import gone

TOKEN = "setup-test-token-0123456789abcdef"


class SetupDaemonTestCase(TestCase):
    """A distribution, a state dir, a workspace, and an API helper."""

    timeout = 120

    def write(self, steps: list[StepDef], assets: list[Any] | None = None) -> None:
        """The distribution under test."""
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir()
        self.dist = distributions.write(self.root / "dist.sqlite", steps, assets=assets)
        self.state = self.root / "state"
        self.work = self.root / "work"
        self.work.mkdir()

    def spawn(self) -> d.Daemon:
        """Start the daemon on the same state dir (a restart when one ran before)."""
        daemon = d.start(
            [
                "--distribution",
                str(self.dist),
                "--state-dir",
                str(self.state),
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            env={**os.environ, "WORKSHOP_TOKEN": TOKEN},
            cwd=str(self.work),
        )
        self.addCleanup(d.stop, daemon)
        return daemon

    async def api(self, url: str, method: str, path: str) -> tuple[int, Any]:
        """One authenticated call."""
        headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {TOKEN}"}
        response = await d.http().request(method, url + path.lstrip("/"), headers=headers)
        text = await response.text()
        return response.code, json.loads(text) if text else None

    async def setup_state(self, url: str, *states: str | None, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) until the status's setup is in one of ``states``; answer it."""
        deadline = reactor.seconds() + timeout
        setup: dict[str, Any] = {}
        while reactor.seconds() < deadline:
            code, status = await self.api(url, "GET", "/api/v1/status")
            setup = status.get("setup") or {} if code == 200 else {}
            if setup and setup["state"] in states:
                return setup
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"setup never reached {states}: {setup}")


class OnceTests(SetupDaemonTestCase):
    """The background script runs once per working copy; the foreground one is given out once."""

    async def test_background_once_foreground_once(self) -> None:
        """Start: the script runs in the workspace and logs; restart: not again; foreground: once, even after."""
        self.write(
            [
                StepDef(
                    "intro",
                    validation={"rules": [file_rule("made", "made-by-setup.txt", contains="ready")]},
                    setup={"background": "echo preparing; echo ready > made-by-setup.txt", "foreground": "echo hi"},
                )
            ]
        )
        daemon = self.spawn()
        url = await daemon.listening
        await daemon.when_ready()
        setup = await self.setup_state(url, "done", "failed")
        self.assertEqual((setup["state"], setup["exit_code"]), ("done", 0))
        self.assertEqual((self.work / "made-by-setup.txt").read_text(), "ready\n")
        self.assertEqual((self.state / "setup" / "intro.log").read_text(), "preparing\n")
        code, result = await self.api(url, "POST", "/api/v1/steps/intro/validation")
        self.assertEqual((code, result["passed"]), (200, True))
        self.assertEqual(
            await self.api(url, "POST", "/api/v1/steps/intro/setup/foreground"),
            (200, {"step": "intro", "script": "echo hi"}),
        )

        # A crash and a restart on the same working copy.
        (self.work / "made-by-setup.txt").unlink()
        daemon.kill9()
        await daemon.ended
        again = self.spawn()
        url = await again.listening
        await again.when_ready()
        self.assertIn(b"resuming the working copy", again.output)
        setup = (await self.api(url, "GET", "/api/v1/status"))[1]["setup"]
        self.assertEqual((setup["state"], setup["foreground"]), ("done", "typed"))
        self.assertFalse((self.work / "made-by-setup.txt").exists(), "the script ran again")
        code, body = await self.api(url, "POST", "/api/v1/steps/intro/setup/foreground")
        self.assertEqual((code, body["error"]), (409, "foreground_typed"))


class BoundTests(SetupDaemonTestCase):
    """A script that never ends and forks a daemon; a backend that stops while a script runs."""

    async def test_stopped_at_its_timeout_nothing_left(self) -> None:
        """At the timeout: failed, timed out, the message and the output say so; the forked daemon is gone
        too; running it again is offered (the retry route answers running)."""
        script = (
            "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &\n"
            "echo $$ > shell.pid\nwhile :; do echo still going; sleep 1; done\n"
        )
        self.write([StepDef("intro", setup={"background": script, "timeout": 5})])
        daemon = self.spawn()
        url = await daemon.listening
        setup = await self.setup_state(url, "failed")
        self.assertTrue(setup["timed_out"])
        self.assertEqual(setup["message"], "The setup script did not finish within 5 s and was stopped.")
        self.assertIn("still going", setup["output"])
        pids = [int((self.work / name).read_text()) for name in ("daemon.pid", "shell.pid")]
        self.assertTrue(await gone(pids), "something the script started is still running")
        code, body = await self.api(url, "POST", "/api/v1/steps/intro/setup")
        self.assertEqual((code, body["state"]), (200, "running"))

    async def test_backend_stop_kills_a_running_script(self) -> None:
        """SIGTERM while a script runs: the backend exits 0 and the script does not outlive it."""
        self.write([StepDef("intro", setup={"background": "echo $$ > shell.pid; exec sleep 300"})])
        daemon = self.spawn()
        url = await daemon.listening
        await self.setup_state(url, "running")
        deadline = reactor.seconds() + 30
        pid_file = self.work / "shell.pid"
        while not (pid_file.exists() and pid_file.read_text().strip()) and reactor.seconds() < deadline:
            await deferLater(reactor, 0.05, lambda: None)
        shell = int(pid_file.read_text())
        self.assertTrue(alive(shell))
        self.assertEqual(await d.stop(daemon), 0)
        self.assertTrue(await gone([shell]), "the running script outlived the backend")


class AssetTests(SetupDaemonTestCase):
    """An asset over TCP, the way a browser's <img> asks: no credentials."""

    async def test_large_asset_without_credentials(self) -> None:
        """3 MiB streamed whole; the step's HTML names it; an ETag revalidation is 304."""
        data = os.urandom(3 * 1024 * 1024)
        self.write(
            [StepDef("intro", markdown="[the data](./data/blob.bin)")],
            assets=[("data/blob.bin", "application/octet-stream", data)],
        )
        daemon = self.spawn()
        url = await daemon.listening
        await daemon.when_ready()
        html = (await self.api(url, "GET", "/api/v1/steps/intro"))[1]["html"]
        digest = hashlib.sha256(data).hexdigest()
        path = f"assets/{digest}/data/blob.bin"
        self.assertIn(f'href="/{path}"', html)
        response = await d.http().get(url + path)
        body = await response.content()
        self.assertEqual((response.code, len(body), hashlib.sha256(body).hexdigest()), (200, len(data), digest))
        self.assertEqual(response.headers.getRawHeaders("content-disposition")[0].split(";")[0], "attachment")
        headers: dict[bytes | str, bytes | str] = {"If-None-Match": f'"{digest}"'}
        again = await d.http().get(url + path, headers=headers)
        await again.content()
        self.assertEqual(again.code, 304)
