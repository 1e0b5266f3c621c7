"""Build the self-contained one-dir bundle and its tarball.

    python bundle/build.py [--tls] [--nvx] [--optimize N] [--no-strip] [--dist DIR]

Writes ``dist/workshop-backend/`` (run ``dist/workshop-backend/workshop-backend``)
and ``dist/workshop-backend-<version>-linux-<arch>.tar.gz`` (one top-level
directory, ``workshop-backend/``).  ``<arch>`` uses container platform names
(``amd64``, ``arm64``) so a Containerfile can pick it by ``TARGETARCH``.

The bundle carries its own Python and every library but glibc: build it on
the oldest glibc it has to run on (Debian bookworm's 2.36 covers bookworm,
trixie, Ubuntu 24.04, RHEL 10; Alpine/musl needs a build on Alpine).  After
building it runs a smoke test: ``--version``-free, it asks the bundle to
parse a bad option (exit 2, one line) and to run the child exec wrapper.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "bundle" / "workshop-backend.spec"
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def version() -> str:
    """The version of the installed package (the one being bundled)."""
    from importlib.metadata import version as installed

    return installed("workshop-backend")


def arch() -> str:
    """This machine's architecture, as container platforms name it."""
    machine = platform.machine().lower()
    return ARCHES.get(machine, machine)


def tree_size(path: Path) -> int:
    """Bytes used by the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def make_tarball(bundle: Path, target: Path) -> None:
    """A reproducible-ish tarball: sorted names, root-owned, fixed mtimes."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or int(time.time())

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = epoch
        return info

    tmp = target.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=9) as tar:
        paths = sorted(bundle.rglob("*"))
        tar.add(bundle, arcname=bundle.name, recursive=False, filter=normalise)
        for path in paths:
            tar.add(path, arcname=str(Path(bundle.name) / path.relative_to(bundle)), recursive=False, filter=normalise)
    tmp.replace(target)


def smoke_test(executable: Path) -> None:
    """The bundle starts, refuses a bad option with exit 2, and runs the child wrapper."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    bad = subprocess.run([str(executable), "--no-such-option"], capture_output=True, text=True, env=env, check=False)
    if bad.returncode != 2 or len(bad.stderr.strip().splitlines()) != 1:
        raise SystemExit(f"smoke test: a bad option gave exit {bad.returncode}: {bad.stderr!r}")
    child = subprocess.run(
        [str(executable), "--childexec", "--setsid", "--", "/bin/sh", "-c", "echo ok"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd="/",
    )
    if child.returncode != 0 or child.stdout.strip() != "ok":
        raise SystemExit(f"smoke test: --childexec gave exit {child.returncode}: {child.stdout!r} {child.stderr!r}")


def main(argv: list[str] | None = None) -> int:
    """Run PyInstaller, then tar the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", action="store_true", help="keep pyOpenSSL (https:// validation rules)")
    parser.add_argument("--nvx", action="store_true", help="keep Autobahn's NVX (cffi) accelerators")
    parser.add_argument("--optimize", type=int, choices=(0, 1, 2), default=2, help="bytecode optimization (default 2)")
    parser.add_argument("--no-strip", action="store_true", help="do not strip binaries")
    parser.add_argument(
        "--archive", action="store_true", help="keep modules in PyInstaller's compressed archive (slower imports)"
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work dir")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env["WORKSHOP_BUNDLE_TLS"] = "1" if args.tls else "0"
    env["WORKSHOP_BUNDLE_STRIP"] = "0" if args.no_strip else "1"
    env["WORKSHOP_BUNDLE_NVX"] = "1" if args.nvx else "0"
    env["WORKSHOP_BUNDLE_OPTIMIZE"] = str(args.optimize)
    env["WORKSHOP_BUNDLE_NOARCHIVE"] = "0" if args.archive else "1"
    dist: Path = args.dist.resolve()
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level=WARN",
            f"--distpath={dist}",
            f"--workpath={args.work.resolve()}",
            str(SPEC),
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    bundle = dist / "workshop-backend"
    executable = bundle / "workshop-backend"
    smoke_test(executable)
    tarball = dist / f"workshop-backend-{version()}-linux-{arch()}.tar.gz"
    make_tarball(bundle, tarball)
    print(f"bundle:  {executable}  ({tree_size(bundle) / 1e6:.1f} MB unpacked)")
    print(f"tarball: {tarball}  ({tarball.stat().st_size / 1e6:.1f} MB)")
    print(f"built in {time.monotonic() - started:.0f} s")
    if shutil.which("ttyd") is None:
        print("note: the bundle needs ttyd on PATH (or --ttyd) at run time; it does not carry one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
