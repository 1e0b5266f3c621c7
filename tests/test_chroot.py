# mypy: allow-untyped-calls
"""The bundle in a Python-less Debian root, started the way the Containerfile starts it.

What ``deploy/Containerfile`` does, without Docker: a ``debootstrap
--variant=minbase`` root (no Python in it) gets tini, ttyd and the bundle,
and runs ``/sbin/tini -- /usr/local/bin/workshop-backend --demo`` as PID 1
of its own PID and mount namespaces (the network is shared, so the test
reaches it on 127.0.0.1).  Then: ``/readyz`` answers 200, the API answers,
a command typed through ``/terminal`` runs inside the root, and SIGTERM to
tini stops everything (exit 0, the terminal closed with 1001, no process
left) well within the grace period.

Only runs when asked, as root, with the tools at hand::

    python bundle/build.py                  # or: tox -e bundle
    python -m tests.test_chroot prepare     # debootstrap once (cached)
    WORKSHOP_TEST_CHROOT=1 python -m twisted.trial tests.test_chroot

Environment: ``WORKSHOP_TEST_CHROOT=1`` (required), ``WORKSHOP_TEST_BUNDLE``
(the bundle directory; default ``dist/workshop-backend``),
``WORKSHOP_TEST_CHROOT_CACHE`` (default ``/var/cache/workshop-backend-test``),
``WORKSHOP_TEST_DEBIAN_MIRROR`` (default: the mirror this machine's apt
uses for the suite, from ``/etc/apt/sources.list.d/*.sources`` or
``/etc/apt/sources.list``, else deb.debian.org).  The cached root is never modified: each
run mounts an overlay on it (or copies it if overlayfs is unavailable).
devpts, the ptmx bind mount and /proc are mounted inside the private mount
namespace, so they go away with it; the overlay is unmounted in cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.daemon import http
from tests.test_terminal_integration import Term

reactor: Any = _reactor

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
ROOT_VERSION = "v1"  # bump to rebuild every cached root
ROOT_NAME = f"{SUITE}-minbase-{ROOT_VERSION}"
DEFAULT_CACHE = "/var/cache/workshop-backend-test"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = Path("/etc/apt")
TOKEN = "chroot-test-token-0123456789abcdef"
GRACE = 10.0
"""Seconds SIGTERM -> everything gone may take (deploy/kubernetes.yaml gives 15)."""
DEADLINE = 30.0
PATH_IN_ROOT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    """Where the debootstrapped root is kept between runs."""
    return Path(os.environ.get("WORKSHOP_TEST_CHROOT_CACHE", DEFAULT_CACHE))


def bundle_dir() -> Path:
    """The one-dir bundle under test."""
    return Path(os.environ.get("WORKSHOP_TEST_BUNDLE", REPO / "dist" / "workshop-backend"))


def tini_binary() -> str | None:
    """A statically linked tini (it must run inside the root)."""
    for name in ("tini-static", "tini"):
        found = shutil.which(name)
        if found and _is_static(found):
            return found
    return None


def _is_static(path: str) -> bool:
    """True for an ELF without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(8192)
    return b"/ld-linux" not in head and b"/ld-musl" not in head


def mirror_from_apt(deb822: list[str], one_line: list[str], suite: str = SUITE) -> str | None:
    """The archive URI apt uses for ``suite`` (not its -security or -updates pocket), or None.

    ``deb822`` are the texts of ``*.sources`` files (stanzas of ``Types``,
    ``URIs``, ``Suites``, ``Enabled``); ``one_line`` those of
    ``sources.list`` files (``deb [options] URI suite components``).  Where
    apt works, debootstrap works with the same mirror (a proxy, a local
    mirror, a snapshot).
    """
    for text in deb822:
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            if suite in fields.get("suites", "").split() and fields.get("uris"):
                return fields["uris"].split()[0]
    for text in one_line:
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] != ["deb"]:
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = words[1:]
            if len(words) >= 2 and words[1] == suite:
                return words[0]
    return None


def debian_mirror(apt: Path = APT_SOURCES) -> str:
    """``WORKSHOP_TEST_DEBIAN_MIRROR``, else the mirror of this machine's apt, else deb.debian.org."""
    chosen = os.environ.get("WORKSHOP_TEST_DEBIAN_MIRROR")
    if chosen:
        return chosen

    def texts(paths: list[Path]) -> list[str]:
        out = []
        for path in paths:
            try:
                out.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
        return out

    deb822 = texts(sorted((apt / "sources.list.d").glob("*.sources")))
    one_line = texts([apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))])
    return mirror_from_apt(deb822, one_line) or DEFAULT_MIRROR


def debootstrap_command(target: Path) -> list[str]:
    """The debootstrap that makes a minimal root."""
    return ["debootstrap", "--variant=minbase", SUITE, str(target), debian_mirror()]


def prepare(cache: Path | None = None) -> Path:
    """Make the cached root if missing (takes minutes); its path.  Synchronous, for CI and ``__main__``."""
    cache = cache or cache_dir()
    root = cache / ROOT_NAME
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{ROOT_NAME}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(debootstrap_command(tmp), check=True)
    tmp.rename(root)
    return root


def skip_reason() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.environ.get("WORKSHOP_TEST_CHROOT") != "1":
        return "set WORKSHOP_TEST_CHROOT=1 to run the chroot integration test (needs root, debootstrap, the bundle)"
    if not sys.platform.startswith("linux"):
        return "Linux only"
    if os.geteuid() != 0:
        return "needs root (mount, unshare, chroot)"
    for tool in ("unshare", "chroot", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not (cache_dir() / ROOT_NAME).is_dir() and shutil.which("debootstrap") is None:
        return f"no cached root at {cache_dir() / ROOT_NAME} and no debootstrap to make one"
    if tini_binary() is None:
        return "no statically linked tini (apt-get install tini: it ships /usr/bin/tini-static)"
    if not (bundle_dir() / "workshop-backend").is_file():
        return f"no bundle at {bundle_dir()}: run `tox -e bundle` (python bundle/build.py) first"
    return None


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def pids_rooted_in(root: Path) -> list[int]:
    """Host pids whose root directory is ``root`` (what is left of the container)."""
    found = []
    target = str(root.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/root") == target:
                found.append(int(entry))
        except OSError:
            continue
    return found


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` in the test's own mount namespace."""
    prefix = str(path.resolve())
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


class Container(ProcessProtocol):
    """``unshare ... chroot ROOT /sbin/tini -- workshop-backend``: its JSON log and its end."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = b""
        self.errors = b""
        self.ended: Deferred[int | None] = Deferred()
        self.exit_code: int | None = None
        self.spawned_at = 0.0
        """Wall-clock time of the spawn (the log's times are wall-clock too)."""

    def outReceived(self, data: bytes) -> None:
        """Collect complete log lines."""
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        self.lines += [line.decode("utf-8", "replace") for line in complete if line.strip()]

    def errReceived(self, data: bytes) -> None:
        """Keep stderr (tini and the mounts report there)."""
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        """Record the exit code."""
        if isinstance(reason.value, (ProcessDone, ProcessTerminated)):
            self.exit_code = reason.value.exitCode
        self.ended.callback(self.exit_code)

    def events(self) -> list[dict[str, Any]]:
        """The log as JSON events (fails the test on a line that is not JSON)."""
        return [json.loads(line) for line in self.lines]

    def describe(self) -> str:
        """The output, for failure messages."""
        return "\n".join(self.lines[-40:]) + "\nstderr: " + self.errors.decode("utf-8", "replace")[-2000:]


class ChrootTests(TestCase):
    """The bundle as a container's ENTRYPOINT under tini, in a root without Python."""

    timeout = 900  # the first run debootstraps

    def setUp(self) -> Any:
        """Skip unless asked and able."""
        reason = skip_reason()
        if reason:
            raise SkipTest(reason)

    @inlineCallbacks
    def make_root(self) -> Any:
        """A writable root over the cached one, with tini, ttyd and the bundle as the Containerfile puts them."""
        from workshop_backend.terminal.ttydbin import bundled_ttyd

        cached = cache_dir() / ROOT_NAME
        if not cached.is_dir():
            cache_dir().mkdir(parents=True, exist_ok=True)
            tmp = cache_dir() / f"{ROOT_NAME}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            command = debootstrap_command(tmp)
            _out, err, code = yield getProcessOutputAndValue(command[0], command[1:], env=dict(os.environ))
            if code != 0:
                self.fail(f"debootstrap failed ({code}): {err[-2000:]!r}")
            tmp.rename(cached)

        base = Path(self.mktemp()).resolve()
        upper, work, root = base / "upper", base / "work", base / "root"
        for d in (upper, work, root):
            d.mkdir(parents=True)
        overlay = subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={cached},upperdir={upper},workdir={work}",
                str(root),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if overlay.returncode == 0:
            self.addCleanup(self.unmount, root)
        else:
            copied = yield getProcessOutputAndValue("cp", ["-a", f"{cached}/.", str(root)], env=dict(os.environ))
            if copied[2] != 0:
                self.fail(f"no overlayfs ({overlay.stderr.strip()}) and cp -a failed: {copied[1]!r}")

        self.assertFalse(
            [p for p in ("usr/bin/python3", "usr/bin/python", "usr/local/bin/python3") if (root / p).exists()],
            "the test root must not contain Python",
        )
        # What deploy/Containerfile does.
        shutil.copy2(str(tini_binary()), root / "sbin" / "tini")
        shutil.copy2(bundled_ttyd(), root / "usr" / "local" / "bin" / "ttyd")
        shutil.copytree(bundle_dir(), root / "opt" / "workshop-backend", symlinks=True)
        (root / "usr" / "local" / "bin" / "workshop-backend").symlink_to("/opt/workshop-backend/workshop-backend")
        return root

    def unmount(self, root: Path) -> None:
        """Unmount the overlay; if something still holds it, detach it lazily and fail."""
        busy = subprocess.run(["umount", str(root)], capture_output=True, text=True, check=False)
        if busy.returncode != 0:
            subprocess.run(["umount", "-l", str(root)], capture_output=True, check=False)
            self.fail(f"the root was still in use at cleanup: {busy.stderr.strip()}")
        self.assertEqual(mounts_under(root), [], "mounts left behind")

    def start(self, root: Path, port: int) -> tuple[Container, Any]:
        """Run tini as PID 1 of new PID and mount namespaces, chrooted; devpts and ptmx mounted inside."""
        inside = (
            # ttyd 1.7.7 segfaults on a client unless /dev/pts is a devpts
            # (see ttyd-notes): a new instance, its ptmx bound over /dev/ptmx.
            'mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$1/dev/pts"; '
            'mount --bind "$1/dev/pts/ptmx" "$1/dev/ptmx"; '
            'exec chroot "$@"'
        )
        argv = [
            "unshare",
            "--pid",
            "--fork",
            f"--mount-proc={root}/proc",
            "/bin/sh",
            "-ec",
            inside,
            "sh",
            str(root),
            "/sbin/tini",
            "--",
            "/usr/local/bin/workshop-backend",
            "--demo",
            "--log-format",
            "json",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ]
        env = {"PATH": PATH_IN_ROOT, "HOME": "/root", "TERM": "xterm", "LANG": "C.UTF-8", "WORKSHOP_TOKEN": TOKEN}
        container = Container()
        container.spawned_at = time.time()
        transport = reactor.spawnProcess(container, "unshare", argv, env=env, path="/")

        def kill_leftovers() -> Deferred[Any] | None:
            if container.ended.called:
                return None
            transport.signalProcess("KILL")  # the PID namespace's init dies, the kernel kills the rest
            return container.ended

        self.addCleanup(kill_leftovers)
        return container, transport

    def tini_pid(self, unshare_pid: int) -> int | None:
        """The host pid of PID 1 in the namespace (unshare's child, tini once exec'd)."""
        for pid in children_of(unshare_pid):
            try:
                with open(f"/proc/{pid}/comm", encoding="ascii") as f:
                    if f.read().strip() == "tini":
                        return pid
            except OSError:
                continue
        return None

    @inlineCallbacks
    def test_container(self) -> Any:
        """Ready, API, a command through /terminal, SIGTERM: clean exit 0 and nothing left."""
        root = yield self.make_root()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        container, transport = self.start(root, port)

        def ready() -> Deferred[bool]:
            d: Deferred[Any] = http().get(base + "/readyz", timeout=2)
            return d.addCallback(lambda r: r.code == 200)

        yield self.wait_async(ready, container, "/readyz 200")

        # What the start costs in the root under tini (unshare and chroot included): to the ready line.
        def ready_logged() -> Deferred[bool]:
            return succeed(any('"ready: step' in line for line in container.lines))

        yield self.wait_async(ready_logged, container, "the ready line")
        ready_line = next(e for e in container.events() if e.get("message", "").startswith("ready: step"))
        started = datetime.fromisoformat(ready_line["time"].replace("Z", "+00:00")).timestamp() - container.spawned_at

        auth: Any = {"Authorization": [f"Bearer {TOKEN}"]}
        response = yield http().get(base + "/api/v1/workshop", headers=auth)
        body = yield response.json()
        self.assertEqual(response.code, 200, body)
        self.assertTrue(body["steps"], body)
        response = yield http().get(base + "/api/v1/status", headers=auth)
        status = yield response.json()
        self.assertEqual((response.code, status["phase"]), (200, "ready"), status)

        factory = WebSocketClientFactory(
            url=f"ws://127.0.0.1:{port}/terminal", protocols=["tty"], headers={"Authorization": f"Bearer {TOKEN}"}
        )
        factory.protocol = Term
        term = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        yield term.opened
        term.type("touch /tmp/marker && echo marker-$((6*7))-made\r")
        yield term.wait_for(rb"marker-42-made", timeout=DEADLINE)
        self.assertTrue((root / "tmp" / "marker").is_file(), "the command ran outside the root")

        running = pids_rooted_in(root)
        self.assertGreaterEqual(len(running), 4, "tini, the backend, ttyd and a shell run in the root")
        unshare_pid = transport.pid
        tini = self.tini_pid(unshare_pid)
        if tini is None:
            self.fail("tini is not PID 1 of the namespace")
        stopping = reactor.seconds()
        os.kill(tini, signal.SIGTERM)
        code, _reason = yield term.closed.addTimeout(GRACE, reactor)
        self.assertEqual(code, 1001, "the terminal is closed with 1001 (backend shutting down)")
        exit_code = yield container.ended.addTimeout(GRACE, reactor)
        took = reactor.seconds() - stopping
        self.assertEqual(exit_code, 0, container.describe())
        self.assertLess(took, GRACE)
        self.assertEqual(pids_rooted_in(root), [], "processes left in the root")

        # The log: JSON lines, a start-up summary, requests without the token,
        # the terminal opened; ttyd stopped before the end.
        events = container.events()
        text = "\n".join(container.lines)
        self.assertNotIn(TOKEN, text)
        loggers = [e.get("logger", "") for e in events]
        self.assertIn("workshop_backend.services.BackendService", loggers)
        access = [e for e in events if e.get("logger") == "workshop_backend.access"]
        self.assertTrue(any(e.get("path") == "/api/v1/workshop" and e.get("status") == 200 for e in access), access)
        self.assertTrue(any(e.get("message", "").startswith("terminal opened for") for e in events), text)
        self.assertTrue(
            any(
                "stopped" in e.get("message", "") and e.get("logger") == "workshop_backend.terminal.supervisor"
                for e in events
            ),
            text,
        )
        print(f"\nchroot: start -> ready {started:.3f} s; SIGTERM -> exit 0 in {took:.2f} s")

    def wait_async(self, check: Any, container: Container, what: str) -> Deferred[None]:
        """Fires once ``check()`` fires True (polled every 50 ms); fails if the container ends or at the deadline."""
        d: Deferred[None] = Deferred()
        deadline = reactor.seconds() + DEADLINE

        def again(_: object = None) -> None:
            if container.ended.called:
                d.errback(
                    Failure(AssertionError(f"the container ended ({container.exit_code}): {container.describe()}"))
                )
            elif reactor.seconds() > deadline:
                d.errback(Failure(AssertionError(f"timed out waiting for {what}: {container.describe()}")))
            else:
                attempt = check()
                attempt.addCallbacks(
                    lambda ok: d.callback(None) if ok else reactor.callLater(0.05, again),
                    lambda _f: reactor.callLater(0.05, again),
                )

        again()
        return d


if __name__ == "__main__":
    if sys.argv[1:] == ["prepare"]:
        print(prepare())
    else:
        print("usage: python -m tests.test_chroot prepare", file=sys.stderr)
        sys.exit(2)


class MirrorTests(SynchronousTestCase):
    """The debootstrap mirror is the one this machine's apt uses (runs everywhere: no root needed)."""

    def test_deb822(self) -> None:
        """The main archive of the suite, not its security pocket; disabled stanzas and comments skipped."""
        sources = (
            "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
            "Components: main\n\n"
            "# a comment\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb deb-src\nURIs: http://mirror.example/debian http://other.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
        )
        self.assertEqual(mirror_from_apt([sources], []), "http://mirror.example/debian")

    def test_one_line(self) -> None:
        """``sources.list`` lines, with options in brackets; deb-src and other suites ignored."""
        listing = (
            "deb-src http://src.example/debian bookworm main\n"
            "deb http://security.example/debian-security bookworm-security main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example:3142/debian bookworm main # local proxy\n"
        )
        self.assertEqual(mirror_from_apt([], [listing]), "http://proxy.example:3142/debian")

    def test_none(self) -> None:
        """Nothing for the suite: None (the caller falls back to deb.debian.org)."""
        self.assertIsNone(
            mirror_from_apt(["Types: deb\nURIs: http://x/ubuntu\nSuites: noble\n"], ["deb http://x trixie main"])
        )

    def test_from_files_and_environment(self) -> None:
        """Read from an apt directory; the environment variable wins; the default last."""
        apt = Path(self.mktemp())
        (apt / "sources.list.d").mkdir(parents=True)
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "WORKSHOP_TEST_DEBIAN_MIRROR"})
        self.assertEqual(debian_mirror(apt), DEFAULT_MIRROR)
        (apt / "sources.list.d" / "debian.sources").write_text(
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\n"
        )
        self.assertEqual(debian_mirror(apt), "http://m.example/debian")
        os.environ["WORKSHOP_TEST_DEBIAN_MIRROR"] = "http://chosen.example/debian"
        self.assertEqual(debian_mirror(apt), "http://chosen.example/debian")
