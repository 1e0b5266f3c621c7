"""Reading and checking a distribution file (contract section 3).

The distribution is written by the build pipeline and mounted read-only (in
Kubernetes as a ConfigMap: a chain of symlinks).  We open it read-only, check
everything we rely on, and turn it into the immutable :class:`Workshop`.
Every problem becomes one :class:`DistributionError` whose message names the
file and the problem, because the daemon must refuse to start with one clear
line rather than fail later in front of a student.

This runs once at start, before the reactor serves anything, so it is plain
synchronous code.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from workshop_backend.support.files import file_sha256
from workshop_backend.validation.spec import SpecError, ValidationSpec, parse_validation
from workshop_backend.workshop.model import Step, Workshop

FORMAT_VERSION = 1
FORMAT_SQL = "format1.sql"
SQLITE_HEADER = b"SQLite format 3\x00"
STEP_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")

REQUIRED_COLUMNS: dict[str, set[str]] = {
    "workshop": {"id", "title", "version", "description", "navigation"},
    "steps": {"id", "position", "title", "markdown", "image_tag"},
    "step_metadata": {"step_id", "validation", "hints"},
}


def format_sql() -> str:
    """The distribution's tables (``format1.sql`` in this package): what the build pipeline writes."""
    return (resources.files("workshop_backend.workshop") / FORMAT_SQL).read_text(encoding="utf-8")


class DistributionError(Exception):
    """A distribution we cannot serve; ``str()`` is the one line to print."""


@dataclass(frozen=True)
class Distribution:
    """A checked distribution: where it really is, its hash, its content."""

    path: Path
    sha256: str
    workshop: Workshop


def resolve(path: Path) -> Path:
    """Follow a symlink chain to the real file, or explain why we cannot."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise DistributionError(f"distribution not found: {path}") from None
    except RuntimeError:
        raise DistributionError(f"distribution is a symlink loop: {path}") from None
    except OSError as e:
        raise DistributionError(f"cannot read distribution {path}: {e.strerror}") from None
    if not real.is_file():
        raise DistributionError(f"distribution is not a regular file: {path}")
    return real


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that never creates or writes any file."""
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        yield conn
    finally:
        conn.close()


def load_distribution(path: Path, *, step: str | None = None) -> Distribution:
    """Resolve, check and load a distribution; ``step`` is ``--step`` to check."""
    real = resolve(path)
    try:
        with real.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DistributionError(f"cannot read distribution {path}: {e.strerror}") from None
    if header != SQLITE_HEADER:
        raise DistributionError(f"distribution is not an SQLite file: {path}")
    sha256 = file_sha256(real)
    try:
        with open_readonly(real) as conn:
            workshop = read_workshop(conn, path)
    except sqlite3.DatabaseError as e:
        raise DistributionError(f"distribution {path} cannot be read as SQLite: {e}") from None
    if step is not None and workshop.step(step) is None:
        known = ", ".join(s.id for s in workshop.steps)
        raise DistributionError(
            f"distribution {path} has no step {step!r} (--step / WORKSHOP_STEP); its steps: {known}"
        )
    return Distribution(path=real, sha256=sha256, workshop=workshop)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def read_workshop(conn: sqlite3.Connection, path: Path) -> Workshop:
    """Read and check the distribution tables through an open connection."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != FORMAT_VERSION:
        raise DistributionError(
            f"distribution {path} has format version {version} (PRAGMA user_version);"
            f" this backend reads {FORMAT_VERSION}"
        )
    for table, required in REQUIRED_COLUMNS.items():
        have = _columns(conn, table)
        if not have:
            raise DistributionError(f"distribution {path} has no table {table!r}")
        missing = sorted(required - have)
        if missing:
            raise DistributionError(f"distribution {path}: table {table!r} lacks column(s) {', '.join(missing)}")

    rows = conn.execute("SELECT id, title, version, description, navigation FROM workshop").fetchall()
    if len(rows) != 1:
        raise DistributionError(f"distribution {path}: table 'workshop' must have exactly one row (has {len(rows)})")
    wid, title, version_s, description, navigation = rows[0]
    for name, value in (("id", wid), ("title", title), ("version", version_s)):
        if not isinstance(value, str) or not value:
            raise DistributionError(f"distribution {path}: workshop.{name} must be a non-empty string")
    if navigation not in ("linear", "free"):
        raise DistributionError(
            f"distribution {path}: workshop.navigation must be 'linear' or 'free' (is {navigation!r})"
        )

    metadata: dict[str, tuple[object, object]] = {}
    for step_id, validation_s, hints_s in conn.execute("SELECT step_id, validation, hints FROM step_metadata"):
        if step_id in metadata:
            raise DistributionError(f"distribution {path}: step_metadata has more than one row for step {step_id!r}")
        metadata[step_id] = (validation_s, hints_s)

    steps: list[Step] = []
    rows = conn.execute("SELECT id, position, title, markdown, image_tag FROM steps ORDER BY position").fetchall()
    if not rows:
        raise DistributionError(f"distribution {path} has no steps")
    seen_ids: set[str] = set()
    for expected, (sid, position, stitle, markdown, image_tag) in enumerate(rows):
        if not isinstance(sid, str) or not STEP_ID.match(sid):
            raise DistributionError(f"distribution {path}: step id {sid!r} is not a slug ([a-z0-9][a-z0-9-]*)")
        if sid in seen_ids:
            raise DistributionError(f"distribution {path}: step id {sid!r} is used twice")
        seen_ids.add(sid)
        if type(position) is not int or position != expected:
            raise DistributionError(
                f"distribution {path}: step positions must be 0..{len(rows) - 1} without gaps or duplicates "
                f"(step {sid!r} has {position!r}, expected {expected})"
            )
        for name, value in (("title", stitle), ("markdown", markdown), ("image_tag", image_tag)):
            if not isinstance(value, str) or (name != "markdown" and not value):
                raise DistributionError(f"distribution {path}: step {sid!r}: {name} must be a non-empty string")
        validation_s, hints_s = metadata.pop(sid, ("{}", "[]"))
        steps.append(
            Step(
                id=sid,
                position=position,
                title=stitle,
                markdown=markdown,
                image_tag=image_tag,
                validation=_validation(path, sid, validation_s),
                hints=_hints(path, sid, hints_s),
            )
        )
    if metadata:
        raise DistributionError(
            f"distribution {path}: step_metadata names unknown step(s): {', '.join(sorted(map(str, metadata)))}"
        )
    return Workshop(
        id=wid,
        title=title,
        version=version_s,
        description=description if isinstance(description, str) else "",
        navigation=navigation,
        steps=tuple(steps),
    )


def _json(path: Path, sid: str, column: str, text: object) -> object:
    if not isinstance(text, str):
        raise DistributionError(f"distribution {path}: step {sid!r}: step_metadata.{column} must be JSON text")
    try:
        return json.loads(text)
    except ValueError as e:
        raise DistributionError(
            f"distribution {path}: step {sid!r}: step_metadata.{column} is not valid JSON ({e})"
        ) from None


def _validation(path: Path, sid: str, text: object) -> ValidationSpec:
    try:
        return parse_validation(_json(path, sid, "validation", text))
    except SpecError as e:
        raise DistributionError(f"distribution {path}: step {sid!r}: validation: {e}") from None


def _hints(path: Path, sid: str, text: object) -> tuple[str, ...]:
    hints = _json(path, sid, "hints", text)
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        raise DistributionError(
            f"distribution {path}: step {sid!r}: step_metadata.hints must be a JSON array of strings"
        )
    return tuple(hints)
