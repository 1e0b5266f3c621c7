"""How long ``workshop-backend check`` takes on a realistic 100-step distribution, and asset serving.

Run: ``python bench/check.py`` (needs the package installed).  It prints:

- ``check``: the command as the build pipeline runs it (a fresh process,
  ``workshop-backend check FILE``) on 100 steps of ~1.5 KB markdown each
  (code blocks with Run and Copy, a table, an admonition, an image and a
  download), two hints each, rules on every other step, a setup script on
  every fifth, 100 assets: the wall time and the process's own CPU time
  (user + system), median of several runs, and the import-only baseline (a
  process that imports what ``check`` imports and does nothing).  Goal:
  under 1 s of its own time.
- ``serve``: a 16 MiB asset fetched from a running daemon (wall time and
  MiB/s) and the daemon's RSS before and after eight parallel fetches of it:
  it is streamed in chunks, so memory stays flat.

Everything listens on 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.core import backend, free_port, rss_kb, start, stop, wait_for  # noqa: E402
from tests.distributions import StepDef, file_rule, write  # noqa: E402
from tests.images import png  # noqa: E402

STEP = """# Step {n}: something to do

Read this, then run the commands. This paragraph is here so the step has the
length of a real one: a few sentences of explanation, **bold** and *italic*
text, `inline code`, and a [link](https://example.com/docs/{n}).

![The diagram for step {n}](images/diagram-{n}.png)

```bash exec
mkdir -p work-{n} && cd work-{n}
echo "step {n}" > notes.txt
```

```yaml
service:
  name: app-{n}
  port: 80{n:02d}
```

| Command | What it does |
|---|---|
| `ls -l` | lists files |
| `cat notes.txt` | shows the notes |

!!! tip "Good to know"
    `Ctrl+C` stops a command that runs too long.

Download [the config](files/config-{n}.conf) if you want to read it.

```
sort notes.txt | uniq -c
```{{{{exec}}}}
"""


def distribution(path: Path, steps: int = 100) -> Path:
    """A realistic workshop of ``steps`` steps, with assets and setup scripts."""
    defs = []
    assets = []
    for n in range(steps):
        validation = {"gate": True, "rules": [file_rule(f"r{n}", f"work-{n}/notes.txt", contains=f"step {n}")]}
        defs.append(
            StepDef(
                f"step-{n}",
                markdown=STEP.format(n=n),
                hints=[f"Try `ls work-{n}`{{{{exec}}}}.", f"The answer:\n\n```bash exec\necho 'step {n}' > x\n```"],
                validation=validation if n % 2 else {},
                setup={"background": f"mkdir -p work-{n}", "timeout": 60} if n % 5 == 0 else {},
            )
        )
        assets.append((f"images/diagram-{n}.png", "image/png", png(64, 32, (n, 100, 200))))
        assets.append((f"files/config-{n}.conf", "text/plain", f"port=80{n:02d}\n".encode()))
    return write(path, defs, assets=assets)


def own_time(argv: list[str]) -> tuple[float, float, int]:
    """(wall s, user+sys CPU s of the child, exit code) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def bench_check(runs: int) -> None:
    """The check command's own time on 100 steps, against an import-only baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        path = distribution(Path(tmp) / "hundred.sqlite")
        check = [*backend(), "check", str(path)]
        imports = [
            sys.executable,
            "-c",
            "import workshop_backend.main, workshop_backend.check, workshop_backend.content.render",
        ]
        code = own_time(check)[2]
        results = [own_time(check) for _ in range(runs)]
        baseline = [own_time(imports) for _ in range(runs)]
        print(f"check: 100 steps, 200 hints, 200 assets ({path.stat().st_size // 1024} KiB), exit {code}")
        print(
            f"  check    wall {statistics.median(r[0] for r in results):.3f} s"
            f"  own CPU {statistics.median(r[1] for r in results):.3f} s  (median of {runs})"
        )
        print(
            f"  imports  wall {statistics.median(r[0] for r in baseline):.3f} s"
            f"  own CPU {statistics.median(r[1] for r in baseline):.3f} s  (python + the imports, nothing checked)"
        )


def fetch(port: int, path: str) -> tuple[int, int, float]:
    """(status, bytes, seconds) of one GET, reading the body in chunks."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    response = conn.getresponse()
    total = 0
    while chunk := response.read(1 << 16):
        total += len(chunk)
    conn.close()
    return response.status, total, time.perf_counter() - started


def bench_serve() -> None:
    """A 16 MiB asset from a running daemon: throughput and the daemon's memory."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.urandom(16 * 1024 * 1024)
        dist = write(
            Path(tmp) / "big.sqlite",
            [StepDef("intro", markdown="[the file](big.bin)")],
            assets=[("big.bin", "application/octet-stream", data)],
        )
        url = f"/assets/{hashlib.sha256(data).hexdigest()}/big.bin"
        port = free_port()
        state = Path(tmp) / "state"
        state.mkdir()
        proc = start(dist, state, port)
        try:
            wait_for(port, "/readyz", time.monotonic() + 30)
            before = rss_kb(proc.pid)
            status, size, seconds = fetch(port, url)
            print(
                f"serve: 16 MiB asset: {status}, {size} bytes in {seconds:.3f} s ({size / seconds / 2**20:.0f} MiB/s)"
            )
            peaks: list[int] = []
            stop_sampling = threading.Event()

            def sample() -> None:
                while not stop_sampling.is_set():
                    peaks.append(rss_kb(proc.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            threads = [threading.Thread(target=fetch, args=(port, url)) for _ in range(8)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            stop_sampling.set()
            sampler.join()
            print(
                f"  8 parallel fetches in {elapsed:.3f} s; daemon RSS {before / 1024:.1f} MiB before,"
                f" peak {max(peaks) / 1024:.1f} MiB during (8 x 16 MiB = 128 MiB if it held them)"
            )
        finally:
            stop(proc)


def main() -> None:
    """Run the benchmarks asked for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-serve", action="store_true")
    args = parser.parse_args()
    bench_check(args.runs)
    if not args.skip_serve:
        bench_serve()


if __name__ == "__main__":
    main()
