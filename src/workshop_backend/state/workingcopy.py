"""Making (or finding again) the per-instance working copy of a distribution.

Blocking file work, so the service runs :func:`prepare` in a thread.  The
working copy is built completely under a temporary name (bytes copied and
checked against the hash we validated, runtime tables created, initial state
written, fsync) and only then renamed into place, so a crash at any moment
leaves either the old working copy or the new one, never half of one.

Resume: the copy records the sha256 of the distribution it was made from.  A
backend restarted in the same container finds a copy with the same hash and
reopens it, losing nothing the student did.  A copy from another
distribution, or one we cannot read, is moved aside (``.previous`` /
``.broken``), never deleted, and a fresh one is made.

Upgrade: the copy also records its runtime schema version.  A copy of an
older version (made by an older backend) is brought up to date in place by
the ``schema/upgrade-vN.sql`` scripts, in one transaction, before it is
reopened; a copy of a version this backend does not know is ``.broken``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from workshop_backend.support.files import file_sha256, fsync_dir
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.workshop.distribution import Distribution, DistributionError

WORKING_COPY = "workshop.sqlite"
SCHEMA_VERSION = 2
"""The runtime schema this backend writes (``schema/v1.sql`` + ``upgrade-v2.sql``); a version 1 copy is upgraded."""
OLDEST_SCHEMA = 1
TEMP_PREFIX = ".workshop.sqlite.tmp-"
#: The files SQLite keeps next to a database, which belong to it.
SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class WorkingCopy:
    """Where the working copy is and how we came by it."""

    path: Path
    resumed: bool
    #: Why an existing copy was not reused (None when resumed or none existed).
    replaced_because: str | None = None
    #: The runtime schema version a resumed copy was upgraded from (None: it was current).
    upgraded_from: int | None = None


def _schema_file(name: str) -> str:
    return (resources.files("workshop_backend.state") / "schema" / name).read_text(encoding="utf-8")


def schema_sql(version: int) -> str:
    """The runtime schema ``version`` as one script: ``schema/v1.sql``, then each ``upgrade-vN.sql`` up to it.

    Each table is written once, in the script that introduced it: a fresh
    copy and an upgraded one are made by the same statements, so they
    cannot drift apart.
    """
    return "\n".join([_schema_file("v1.sql"), *(upgrade_sql(v) for v in range(2, version + 1))])


def upgrade_sql(version: int) -> str:
    """The script that brings a copy from ``version - 1`` to ``version`` (``schema/upgrade-vN.sql``)."""
    return _schema_file(f"upgrade-v{version}.sql")


def recorded_hash(path: Path) -> str | None:
    """The distribution hash recorded in a working copy of this schema version; None if unreadable."""
    found = recorded(path)
    return found[0] if found is not None and found[1] == SCHEMA_VERSION else None


def recorded(path: Path) -> tuple[str, int] | None:
    """(distribution hash, runtime schema version) of a working copy we can use or upgrade; None if not."""
    try:
        # Quoted: a state dir may contain ``?``, ``#`` or ``%``, which a URI would misread.
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        rows = dict(conn.execute("SELECT key, value FROM backend_meta").fetchall())
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        state = conn.execute("SELECT current_step, phase FROM runtime_state WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    versions = {str(v): v for v in range(OLDEST_SCHEMA, SCHEMA_VERSION + 1)}
    version = versions.get(rows.get("schema_version", ""))
    sha256 = rows.get("distribution_sha256")
    if check != "ok" or version is None or state is None or sha256 is None:
        return None
    return sha256, version


def upgrade(path: Path, version: int) -> None:
    """Bring a copy of runtime schema ``version`` up to :data:`SCHEMA_VERSION`, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _statements(upgrade_sql(step)):
                conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


def prepare(
    distribution: Distribution,
    state_dir: Path,
    *,
    container_step: str,
    now: float,
    fresh: bool = False,
) -> WorkingCopy:
    """Reuse the matching working copy in ``state_dir`` or make a new one."""
    target = state_dir / WORKING_COPY
    replaced_because: str | None = None
    _remove_stale_temps(state_dir)
    if target.exists():
        if fresh:
            replaced_because = "--fresh was given"
        else:
            found = recorded(target)
            if found is not None and found[0] == distribution.sha256:
                if found[1] < SCHEMA_VERSION:
                    upgrade(target, found[1])
                return WorkingCopy(
                    path=target, resumed=True, upgraded_from=found[1] if found[1] < SCHEMA_VERSION else None
                )
            if found is None:
                replaced_because = "the existing working copy is unreadable or from an unknown schema"
                _move_aside(target, ".broken")
            else:
                replaced_because = "the existing working copy was made from another distribution"
        if target.exists():
            _move_aside(target, ".previous")
    # A -wal or -journal without its database (a crash between the renames of
    # _move_aside, a hand-deleted copy) would be replayed into the new copy.
    if any(target.with_name(target.name + extra).exists() for extra in SIDECARS):
        _move_sidecars(target, _free_name(target, ".orphaned"))
    _build(distribution, target, container_step=container_step, now=now)
    return WorkingCopy(path=target, resumed=False, replaced_because=replaced_because)


def _free_name(target: Path, suffix: str) -> Path:
    """``workshop.sqlite<suffix>``, else ``<suffix>.1``, ``.2``...: never over an earlier one."""
    n = 0
    while True:
        aside = target.with_name(target.name + suffix + (f".{n}" if n else ""))
        if not any(aside.with_name(aside.name + extra).exists() for extra in ("", *SIDECARS)):
            return aside
        n += 1


def _move_aside(target: Path, suffix: str) -> None:
    aside = _free_name(target, suffix)
    os.replace(target, aside)
    _move_sidecars(target, aside)


def _remove_stale_temps(state_dir: Path) -> None:
    """Half-made copies a killed backend left behind (one backend per state dir)."""
    for stale in state_dir.glob(TEMP_PREFIX + "*"):
        stale.unlink(missing_ok=True)


def _move_sidecars(target: Path, aside: Path) -> None:
    for extra in SIDECARS:
        side = target.with_name(target.name + extra)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + extra))


def _build(distribution: Distribution, target: Path, *, container_step: str, now: float) -> None:
    try:
        # It was checked at start; a ConfigMap update may have removed it since.
        src = distribution.path.open("rb")
    except OSError as e:
        raise DistributionError(f"cannot read distribution {distribution.path}: {e.strerror}") from None
    with src:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            if file_sha256(tmp) != distribution.sha256:
                raise DistributionError(
                    f"distribution {distribution.path} changed while it was being copied; restart to retry"
                )
            _initialise(tmp, distribution, container_step=container_step, now=now)
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
            fsync_dir(target.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _initialise(path: Path, distribution: Distribution, *, container_step: str, now: float) -> None:
    """Add the runtime tables and the initial state to a fresh copy."""
    workshop = distribution.workshop
    stamp = rfc3339(now)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("BEGIN")
        for statement in _statements(schema_sql(SCHEMA_VERSION)):
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO backend_meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("distribution_sha256", distribution.sha256),
                ("created_at", stamp),
            ],
        )
        conn.execute(
            "INSERT INTO runtime_state (id, current_step, target_step, phase, started_at, updated_at)"
            " VALUES (1, ?, NULL, 'ready', ?, ?)",
            (container_step, stamp, stamp),
        )
        index = workshop.index(container_step)
        rows = []
        for step in workshop.steps:
            completed = stamp if workshop.navigation == "linear" and step.position < index else None
            viewed = stamp if step.id == container_step else None
            rows.append((step.id, viewed, completed))
        conn.executemany("INSERT INTO progress (step_id, viewed_at, completed_at) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (executescript would commit).

    The text is kept as written, comments included, so the schema stored in
    the copy is the one executescript would store (and ``--`` inside a string
    literal is left alone).
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if any(line.strip() and not line.strip().startswith("--") for line in buffer.splitlines()):
        raise ValueError("schema script ends inside a statement")
    return statements
