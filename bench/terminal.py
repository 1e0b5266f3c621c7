"""Terminal benchmark: the bridge and its sessions against direct ttyd, in the same run.

    python bench/terminal.py [--megabytes 100] [--rounds 3] [--keystrokes 300]
                             [--flood-seconds 60] [--baseline-ref main]

Starts two ttyds of its own (direct: one on 127.0.0.1 TCP, as a browser
would reach ttyd without us, one on a UNIX socket, as the bridge reaches it)
and a backend process running the supervisor and the bridge (``--serve``, a
child of this script), then measures each with the same minimal WebSocket
client (plain blocking sockets, so the client is not the bottleneck):

* throughput: ``head -c N MiB /dev/zero | base64 -w 0`` in the shell (one long line,
  so the pty's newline processing does not cap the rate), bytes of
  terminal output per second until an end marker arrives;
* keystroke echo latency: one key per WebSocket message into ``cat`` with the
  pty echoing (``stty -icanon``), time until the echo comes back; p50/p99;
* both for a plain client (``bridge``: a new shell per socket, no buffer) and
  for a page that asked for sessions (``session``: every byte of output kept
  in the terminal's buffer for a page that comes back);
* reattach: a terminal with 1 MiB of output a page missed; the time from a
  new connection to the last byte of the replay;
* idle RSS of the backend, beside the same backend built from
  ``--baseline-ref`` (exported with ``git archive``; default ``main``);
* a flood while nobody watches: ``yes`` in three detached terminals for
  ``--flood-seconds``; the backend's RSS growth against the buffers' size +
  16 MB, its CPU, and the "skipped" marker when a page comes back.

With ``--baseline-ref`` the bridge of that ref (a second backend process,
exported with ``git archive``) is measured too (``baseline``): ``session``
against it is what sessions cost, in the same run, whatever the load.

Goals (against direct TCP; the UNIX figures are printed too): throughput of
both bridge modes >= 0.9 x direct; they add < 0.3 ms to the echo p50 and
< 2 ms to the p99; reattach with 1 MiB < 100 ms; idle RSS within 2 MB of the
baseline; flood growth < 3 buffers + 16 MB.  Rounds rotate the order of the
modes.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SHELL = "/bin/bash --norc --noprofile" if os.path.exists("/bin/bash") else "/bin/sh"


# -- a minimal WebSocket client ------------------------------------------------


class Client:
    """Just enough RFC 6455 to speak ttyd's protocol, over a blocking socket."""

    def __init__(self, sock: socket.socket, path: str, host: str) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tty\r\n\r\n"
        )
        sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.head = head
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head!r}")
        self.buf = bytearray(rest)
        self.send(json.dumps({"AuthToken": "", "columns": 120, "rows": 40}).encode(), opcode=1)

    @classmethod
    def unix(cls, path: str) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock, "/ws", "localhost")

    @classmethod
    def tcp(cls, port: int, path: str = "/terminal") -> Client:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, path, f"127.0.0.1:{port}")

    def _fill(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def send(self, payload: bytes, opcode: int = 2) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def type(self, text: str) -> None:
        self.send(b"0" + text.encode())

    def frames(self) -> Any:
        """Yield (opcode, payload) forever; answers pings.  Consumed frames stay consumed
        across calls (the position lives on the client)."""
        while True:
            buf = self.buf
            n = len(buf)
            while n - self.pos >= 2:
                pos = self.pos
                b0, b1 = buf[pos], buf[pos + 1]
                length = b1 & 0x7F
                start = pos + 2
                if length == 126:
                    if n - start < 2:
                        break
                    length = (buf[start] << 8) | buf[start + 1]
                    start += 2
                elif length == 127:
                    if n - start < 8:
                        break
                    (length,) = struct.unpack_from("!Q", buf, start)
                    start += 8
                if n - start < length:
                    break
                payload = bytes(buf[start : start + length])
                self.pos = start + length
                opcode = b0 & 0x0F
                if opcode == 9:
                    self.send(payload, opcode=10)
                    continue
                if opcode == 8:
                    raise EOFError(f"closed: {payload[:2].hex()} {payload[2:]!r}")
                yield opcode, payload
            del buf[: self.pos]
            self.pos = 0
            self._fill()

    def announcement(self, timeout: float = 10.0) -> dict[str, Any]:
        """The session's first message (``S`` + JSON), for a client that asked for sessions."""
        self.sock.settimeout(timeout)
        for _, payload in self.frames():
            if payload[:1] == b"S":
                body: dict[str, Any] = json.loads(payload[1:])
                return body
        raise AssertionError("unreachable")

    def output_until(self, marker: bytes, timeout: float = 120.0) -> int:
        """Read terminal output until ``marker``; the number of output bytes read."""
        self.sock.settimeout(timeout)
        total = 0
        tail = b""
        for _, payload in self.frames():
            if payload[:1] != b"0":
                continue
            total += len(payload) - 1
            window = tail + payload[1:]
            if marker in window:
                return total
            tail = window[-len(marker) :]
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            self.send(struct.pack("!H", 1000), opcode=8)
        except OSError:
            pass
        self.sock.close()


# -- measurements ---------------------------------------------------------------


def throughput(client: Client, megabytes: int) -> tuple[float, int]:
    """MB/s of terminal output for ``head -c N MiB /dev/zero | base64``."""
    client.type("echo ready-$((20+1))\r")
    client.output_until(b"ready-21")
    start = time.perf_counter()
    client.type(f"head -c {megabytes}M /dev/zero | base64 -w 0; echo end-$((40+2))-mark\r")
    total = client.output_until(b"end-42-mark")
    elapsed = time.perf_counter() - start
    return total / elapsed / 1e6, total


def echo_latency(client: Client, keystrokes: int) -> list[float]:
    """Milliseconds from a key sent to its echo, for ``keystrokes`` keys (after a warm-up)."""
    client.type("stty -icanon; echo cat-$((3*3)); cat >/dev/null\r")
    client.output_until(b"cat-9")
    client.sock.settimeout(10)
    frames = client.frames()
    letters = "abcdefghijklmnopqrstuvwxyz"
    samples = []
    for i in range(keystrokes + 20):
        key = letters[i % 26]
        start = time.perf_counter()
        client.type(key)
        while True:
            _, payload = next(frames)
            if payload[:1] == b"0" and key.encode() in payload:
                break
        if i >= 20:
            samples.append((time.perf_counter() - start) * 1000)
    client.type("\x03")
    return samples


def profile(args: argparse.Namespace, pid: int, connect: Any) -> None:
    """Throughput through the bridge only (a session), with py-spy recording the backend (collapsed stacks)."""
    spy = subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            *("record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", args.profile),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # let py-spy attach (the benchmark, not a test)
    for _ in range(args.rounds):
        client = connect()
        rate, _total = throughput(client, args.megabytes)
        end_shell(client)
        print(f"  session (profiled): {rate:7.1f} MB/s")
    spy.send_signal(2)
    spy.wait(30)
    print(f"py-spy collapsed stacks in {args.profile}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


# -- the bridge's own work, in process ----------------------------------------------


def own_cpu(repeats: int, reads: int = 20000) -> dict[str, list[float]]:
    """CPU seconds per GB of the bridge's own Python code on ttyd's output, with no sockets.

    ttyd's frames (4 KiB of output each, one or two per read: the 5.2 KB
    average read counted against a real ttyd) go into an
    :class:`~workshop_backend.terminal.upstream.UpstreamProtocol` whose
    session has one attached page with a counting transport.  The socket
    runs measure the whole backend (Twisted's reactor and the system calls
    of about 190,000 reads a GB: ttyd writes one frame per pty read); this
    is the part that is ours, without their noise: ``bridge`` (a plain
    client) against ``session`` (every byte also kept for a page that comes
    back).  The best of ``repeats`` is the figure (noise only ever adds).
    """
    from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
    from twisted.internet.task import Clock

    from workshop_backend.terminal.upstream import TerminalSession, UpstreamProtocol

    class Sink:
        def __init__(self) -> None:
            self.written = 0

        def write(self, data: bytes) -> None:
            self.written += len(data)

    class Page:
        state = WebSocketProtocol.STATE_OPEN
        peer = None
        greeted = True

        def __init__(self) -> None:
            self.transport = Sink()

        def sendMessage(self, payload: bytes, isBinary: bool) -> None:
            self.transport.write(payload)

        def close_browser(self, code: int, reason: str) -> None:
            """Nothing closes in this measure."""

    class Host:
        def __init__(self) -> None:
            self.reactor = self.clock = Clock()
            self.open_handshake_timeout = self.close_handshake_timeout = 5.0
            self.max_pending_input = 1 << 20
            self.grace = 600.0

        def connect_upstream(self, factory: Any) -> Any:
            raise NotImplementedError

        def close_code_for(self, upstream: Any) -> tuple[int, str]:
            return 1000, ""

        def session_finished(self, session: Any) -> None:
            """Nothing ends in this measure."""

    def frame(payload: bytes) -> bytes:
        return bytes([0x82, 126]) + struct.pack(">H", len(payload)) + payload

    frames = [frame(b"0" + bytes([65 + i % 26]) * 4095) for i in range(64)]
    chunks: list[bytes] = []
    i = 0
    while i < len(frames):
        n = 2 if i % 3 == 0 else 1
        chunks.append(b"".join(frames[i : i + n]))
        i += n

    def once(named: bool) -> float:
        host: Any = Host()
        session = TerminalSession(host, name="bench" if named else None, number=1, buffer_size=2 << 20)
        upstream = UpstreamProtocol()
        upstream.factory = type("Factory", (), {"reactor": host.clock})()
        upstream.state = WebSocketProtocol.STATE_OPEN
        upstream.data = b""
        upstream.trafficStats = TrafficStats()
        upstream.session = session
        session.upstream = upstream
        page: Any = Page()
        session.clients.append(page)
        total = 0
        start = time.process_time()
        for n in range(reads):
            chunk = chunks[n % len(chunks)]
            upstream.dataReceived(chunk)
            total += len(chunk)
            if n % 8 == 7:
                host.clock.advance(0.005)  # the gathering timer, as the reactor would fire it
        upstream.flush()
        seconds = time.process_time() - start
        if page.transport.written != total:
            raise SystemExit(f"the bridge forwarded {page.transport.written} of {total} bytes")
        return seconds / (total / 1e9)

    results: dict[str, list[float]] = {"bridge": [], "session": []}
    for _ in range(repeats):
        results["bridge"].append(once(False))
        results["session"].append(once(True))
    return results


# -- the backend under test (a child process) ------------------------------------


def serve(state_dir: str) -> None:
    """Run the supervisor and the bridge on 127.0.0.1 (port printed on stdout)."""
    from twisted.internet import reactor as _reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from workshop_backend.terminal.bridge import TerminalBridge
    from workshop_backend.terminal.supervisor import TtydSupervisor
    from workshop_backend.terminal.ttydbin import find_ttyd

    reactor: Any = _reactor
    supervisor = TtydSupervisor(
        reactor=reactor,
        ttyd=find_ttyd(os.environ.get("WORKSHOP_TTYD")),
        shell=SHELL,
        state_dir=Path(state_dir),
        cwd=state_dir,
        env={**os.environ, "HOME": state_dir},  # login shells must not run the user's ~/.profile
    )
    options: dict[str, Any] = {}
    if "max_terminals" in inspect.signature(TerminalBridge).parameters:
        # Sessions (when this backend has them): room for every terminal the benchmark opens.
        options["max_terminals"] = 64
    bridge = TerminalBridge(supervisor, reactor, check_handshake=lambda request: None, **options)
    root = Resource()
    root.putChild(b"terminal", bridge.resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")

    announced: list[bool] = []

    def announce(status: dict[str, Any]) -> None:
        if status["state"] == "running" and not announced:
            announced.append(True)
            print(port.getHost().port, flush=True)

    supervisor.add_listener(announce)
    supervisor.startService()
    reactor.addSystemEventTrigger("before", "shutdown", bridge.stopService)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stopService)
    reactor.run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)  # the benchmark's own start-up, not a test


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


MODES = ("direct-tcp", "direct-unix", "bridge", "session")
BRIDGED = ("bridge", "session")
BASELINE = "baseline"  # the bridge of --baseline-ref (a plain client), when it can be exported


def end_shell(client: Client) -> None:
    """Exit the shell (a session's terminal would otherwise live on for its grace period) and close."""
    try:
        client.type("\x03exit\r")
    except OSError:
        pass
    client.close()


def reattach_times(connect: Any, rounds: int) -> list[float]:
    """Milliseconds from a new connection to the last byte of a 1 MiB replay, ``rounds`` times."""
    first = connect("session=new")
    session = first.announcement()["session"]
    first.type("echo ready-$((30+1))\r")
    first.output_until(b"ready-31")
    # Output from here on is what the pages coming back have missed: 1 MiB of base64 and a marker.
    first.type("echo start-$((50+5)); head -c 786432 /dev/zero | base64 -w 0; echo; echo made-$((60+6))\r")
    first.output_until(b"start-55")
    total = first.output_until(b"made-66")
    first.close()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        again = connect(f"session={session}&offset=0")
        info = again.announcement()
        replayed = again.output_until(b"made-66")
        times.append((time.perf_counter() - start) * 1000)
        again.close()
        if replayed < total or info["skipped"]:
            raise SystemExit(f"replay of {replayed} bytes (skipped {info['skipped']}), expected >= {total}")
    last = connect(f"session={session}")
    end_shell(last)
    return times


def flood(connect: Any, backend_pid: int, seconds: float) -> dict[str, Any]:
    """``yes`` in three terminals nobody watches, for ``seconds``: RSS and CPU of the backend."""
    sessions = []
    rss_before = rss_kib(backend_pid)[0]
    for _ in range(3):
        client = connect("session=new")
        info = client.announcement()
        client.type("yes\r")
        client.output_until(b"y\r\ny\r\ny\r\n")
        client.close()
        sessions.append(info["session"])
    cpu = cpu_seconds(backend_pid)
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)  # sampling the backend's RSS once a second: the benchmark, not a test
        samples.append(rss_kib(backend_pid)[0])
    cpu = cpu_seconds(backend_pid) - cpu
    skipped = []
    for session in sessions:
        client = connect(f"session={session}&offset=0")
        skipped.append(client.announcement()["skipped"])
        end_shell(client)
    return {
        "before": rss_before,
        "peak": max(samples),
        "after": samples[-1],
        "cpu": cpu,
        "skipped": skipped,
    }


def idle_rss(state_dir: Path, pythonpath: str | None) -> float:
    """MiB of RSS of a backend (``--serve``) idle after ttyd is ready, from ``pythonpath``'s package."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        int(proc.stdout.readline())
        time.sleep(1.0)  # let start-up garbage settle before reading RSS (the benchmark, not a test)
        return rss_kib(proc.pid)[0] / 1024
    finally:
        proc.terminate()
        proc.wait(10)


def export_ref(ref: str, into: Path) -> str | None:
    """``git archive`` of ``ref``'s ``src`` into ``into``; the path to put on PYTHONPATH (None if git cannot)."""
    root = HERE.parent
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", ref, "src"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into / "src")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=100, help="MiB of /dev/zero to base64 per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keystrokes", type=int, default=300)
    parser.add_argument("--reattaches", type=int, default=5, help="reattaches with 1 MiB to replay")
    parser.add_argument("--own-repeats", type=int, default=12, help="repeats of the in-process measure (best kept)")
    parser.add_argument("--flood-seconds", type=float, default=60.0, help="yes in 3 detached terminals (0: skip)")
    parser.add_argument("--baseline-ref", default="main", help="git ref whose backend's idle RSS is the baseline")
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy the backend (collapsed stacks) during bridge runs only"
    )
    parser.add_argument("--serve", metavar="STATE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from workshop_backend.terminal.sessions import DEFAULT_BUFFER
    from workshop_backend.terminal.supervisor import shell_argv
    from workshop_backend.terminal.ttydbin import find_ttyd

    ttyd = find_ttyd(os.environ.get("WORKSHOP_TTYD"))
    work = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    direct_sock = str(work / "direct.sock")
    direct_port = free_port()
    # A private HOME: a login shell must not run the user's ~/.profile (pyenv's
    # rehash in it takes a lock that a killed shell leaves behind).
    ttyd_env = dict(os.environ, TERM="xterm-256color", HOME=str(work))
    ttyd_args = ["-W", "-P", "60", "-T", "xterm-256color"]
    direct: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(
            [ttyd, *where, *ttyd_args, *shell_argv(SHELL)], cwd=work, stderr=subprocess.DEVNULL, env=ttyd_env
        )
        for where in (["-i", direct_sock], ["-i", "lo", "-p", str(direct_port)])
    ]
    (work / "state").mkdir()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(work / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    baseline: subprocess.Popen[str] | None = None
    exported = export_ref(args.baseline_ref, work / "baseline") if args.baseline_ref else None
    if exported is not None:
        (work / "state-baseline-bridge").mkdir()
        baseline = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(work / "state-baseline-bridge")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, PYTHONPATH=exported),
        )
    modes = (*MODES, BASELINE) if baseline is not None else MODES
    bridged = (*BRIDGED, BASELINE) if baseline is not None else BRIDGED
    try:
        assert backend.stdout is not None
        port = int(backend.stdout.readline())
        baseline_port = 0
        if baseline is not None:
            assert baseline.stdout is not None
            baseline_port = int(baseline.stdout.readline())
        wait_until(lambda: os.path.exists(direct_sock), "the direct ttyd's socket")
        wait_until(lambda: can_connect(direct_port), "the direct ttyd's port")

        def connect(mode: str) -> Client:
            if mode == "direct-unix":
                return Client.unix(direct_sock)
            if mode == "direct-tcp":
                return Client.tcp(direct_port, "/ws")
            if mode == "session":
                return Client.tcp(port, "/terminal?session=new")
            if mode == "bridge":
                return Client.tcp(port)
            if mode == BASELINE:
                return Client.tcp(baseline_port)
            return Client.tcp(port, f"/terminal?{mode}")  # a query of the session protocol

        def done(mode: str, client: Client) -> None:
            if mode == "session":
                end_shell(client)
            else:
                client.close()

        print(f"ttyd {ttyd}; backend pid {backend.pid} on 127.0.0.1:{port}; shell {SHELL}")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        idle = rss_kib(backend.pid)[0] / 1024
        print(f"backend RSS at start: {idle:.1f} MiB")
        if args.profile:
            profile(args, backend.pid, lambda: connect("session"))
            return
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu_per: dict[str, list[float]] = {mode: [0.0, 0.0] for mode in bridged}
        for r in range(args.rounds):
            for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
                client = connect(mode)
                pid = baseline.pid if mode == BASELINE and baseline is not None else backend.pid
                cpu = cpu_seconds(pid)
                rate, total = throughput(client, args.megabytes)
                if mode in bridged:
                    cpu_per[mode][0] += cpu_seconds(pid) - cpu
                    cpu_per[mode][1] += total
                done(mode, client)
                rates[mode].append(rate)
                print(f"  round {r + 1} {mode:11}: {rate:7.1f} MB/s ({total / 1e6:.0f} MB of output)")
        whole = {}
        for mode in bridged:
            seconds, streamed = cpu_per[mode]
            whole[mode] = seconds / (streamed / 1e9)
            print(f"backend CPU in {mode} runs: {whole[mode]:.2f} s per GB")
        rss, hwm = rss_kib(backend.pid)
        print(f"backend RSS after throughput: {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB)")

        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(2):
            for mode in modes:
                client = connect(mode)
                latencies[mode].extend(echo_latency(client, args.keystrokes // 2))
                done(mode, client)

        reattach = reattach_times(connect, args.reattaches)
        own = own_cpu(args.own_repeats)

        baseline_rss: float | None = None
        if exported is not None:
            (work / "state-baseline").mkdir()
            (work / "state-again").mkdir()
            # Both measured the same way, one after the other, on fresh processes.
            baseline_rss = idle_rss(work / "state-baseline", exported)
            idle = idle_rss(work / "state-again", None)

        flooded = flood(connect, backend.pid, args.flood_seconds) if args.flood_seconds > 0 else None

        print()
        print("throughput (MB/s of terminal output)")
        med = {mode: statistics.median(rates[mode]) for mode in modes}
        best = {mode: max(rates[mode]) for mode in modes}
        for mode in modes:
            print(f"  {mode:11} : median {med[mode]:7.1f}  best {best[mode]:7.1f}")
        ratios = {mode: med[mode] / med["direct-tcp"] for mode in BRIDGED}
        for mode in BRIDGED:
            print(
                f"  {mode} / direct-tcp : median {ratios[mode]:.2f}  best {best[mode] / best['direct-tcp']:.2f}"
                f"  (goal >= 0.90);  / direct-unix: median {med[mode] / med['direct-unix']:.2f}"
            )
        if baseline is not None:
            print(
                f"  session / {args.baseline_ref}'s bridge: median {med['session'] / med[BASELINE]:.2f}"
                f"  best {best['session'] / best[BASELINE]:.2f}  (what sessions cost, same run)"
            )
        print(f"keystroke echo latency (ms, {len(latencies['bridge'])} keys each)")
        p50 = {mode: percentile(latencies[mode], 50) for mode in modes}
        p99 = {mode: percentile(latencies[mode], 99) for mode in modes}
        for mode in modes:
            print(f"  {mode:11} : p50 {p50[mode]:6.3f}  p99 {p99[mode]:6.3f}")
        added = {mode: (p50[mode] - p50["direct-tcp"], p99[mode] - p99["direct-tcp"]) for mode in BRIDGED}
        for mode in BRIDGED:
            print(
                f"  {mode} adds (vs direct-tcp): p50 {added[mode][0]:+6.3f} (goal < 0.3)"
                f"  p99 {added[mode][1]:+6.3f} (goal < 2)"
            )
        print(
            "backend CPU per GB of output: the whole process (socket runs) and the bridge's own code"
            f" (in process, best of {args.own_repeats})"
        )
        for mode in BRIDGED:
            mine = min(own[mode])
            print(f"  {mode:11} : whole {whole[mode]:5.2f} s/GB   own code {mine:5.2f} s/GB ({mine / whole[mode]:.0%})")
        print(f"  keeping output for sessions costs {min(own['session']) - min(own['bridge']):+.2f} s/GB of own code")
        print(
            f"reattach with 1 MiB to replay (ms, {len(reattach)} times): median {statistics.median(reattach):.1f}"
            f"  worst {max(reattach):.1f}  (goal < 100)"
        )
        ok = all(ratios[m] >= 0.9 and added[m][0] < 0.3 and added[m][1] < 2 for m in BRIDGED)
        ok = ok and statistics.median(reattach) < 100
        if baseline_rss is not None:
            print(
                f"idle RSS: {idle:.1f} MiB; {args.baseline_ref}: {baseline_rss:.1f} MiB"
                f"  ({idle - baseline_rss:+.1f} MiB, goal within 2)"
            )
            ok = ok and abs(idle - baseline_rss) <= 2
        if flooded is not None:
            bound = 3 * DEFAULT_BUFFER / 1024 + 16 * 1024
            growth = flooded["peak"] - flooded["before"]
            print(
                f"yes in 3 detached terminals for {args.flood_seconds:.0f} s: RSS {flooded['before'] / 1024:.1f}"
                f" -> peak {flooded['peak'] / 1024:.1f} MiB (+{growth / 1024:.1f} MiB, goal < {bound / 1024:.0f});"
                f" backend CPU {flooded['cpu'] / args.flood_seconds:.0%} of a core;"
                f" skipped on return: {', '.join(f'{k / 1e6:.0f} MB' for k in flooded['skipped'])}"
            )
            ok = ok and growth < bound and all(k > 0 for k in flooded["skipped"])
        print("goals met" if ok else "GOALS MISSED")
    finally:
        procs: list[subprocess.Popen[Any]] = [backend, *direct, *([baseline] if baseline is not None else [])]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
