"""Reading and checking a distribution file (contract sections 3, 3.1 and 3.2).

The distribution is written by the build pipeline and mounted read-only (in
Kubernetes as a ConfigMap: a chain of symlinks).  We open it read-only, check
everything we rely on, and turn it into the immutable :class:`Workshop`.

One reader, two ways to use it.  Every fault is told to a :class:`Findings`:

- at start (:func:`load_distribution`), the first fault stops everything as
  a :class:`DistributionError` whose message names the file and the problem,
  because the daemon must refuse to start with one clear line rather than
  fail later in front of a student;
- the ``check`` command (:mod:`workshop_backend.check`) passes
  ``Findings(collect=True)``: faults are collected, reading goes on with a
  harmless stand-in for what was bad (an empty rule list, no hints...), and
  the command prints every problem, one line each.

Some faults leave nothing to read on with (not SQLite, another format
version, a missing table or column): those are *fatal* and stop both ways;
``check`` exits 2 for them ("not a distribution at all").

This runs once at start, before the reactor serves anything, so it is plain
synchronous code.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NoReturn
from urllib.parse import quote

from workshop_backend.support.files import file_sha256
from workshop_backend.validation.spec import SpecError, ValidationSpec, parse_validation
from workshop_backend.workshop.assets import (
    ASSET_MAX,
    ASSETS_COUNT_MAX,
    ASSETS_TOTAL_MAX,
    Asset,
    media_type_fault,
    path_fault,
)
from workshop_backend.workshop.model import Step, Workshop
from workshop_backend.workshop.setup import SetupSpec, parse_setup, setup_faults

FORMAT_VERSION = 1
FORMAT_SQL = "format1.sql"
OPTIONAL_FORMAT_SQL = "format1-optional.sql"
SQLITE_HEADER = b"SQLite format 3\x00"
STEP_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HASH_CHUNK = 1024 * 1024

REQUIRED_COLUMNS: dict[str, set[str]] = {
    "workshop": {"id", "title", "version", "description", "navigation"},
    "steps": {"id", "position", "title", "markdown", "image_tag"},
    "step_metadata": {"step_id", "validation", "hints"},
}
ASSET_COLUMNS = {"path", "media_type", "data"}
"""The optional ``assets`` table's columns: all of them when it exists."""

Severity = Literal["error", "warning"]


def format_sql() -> str:
    """The distribution's tables (``format1.sql`` in this package): what the build pipeline writes."""
    return (resources.files("workshop_backend.workshop") / FORMAT_SQL).read_text(encoding="utf-8")


def optional_format_sql() -> str:
    """The optional parts of format 1 (``format1-optional.sql``): run after :func:`format_sql` to add them."""
    return (resources.files("workshop_backend.workshop") / OPTIONAL_FORMAT_SQL).read_text(encoding="utf-8")


class DistributionError(Exception):
    """A distribution we cannot serve; ``str()`` is the one line to print.

    ``fatal``: not a distribution at all (nothing more can be read from it).
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True)
class Problem:
    """One fault (or warning) of a distribution, as the check command reports it.

    ``where`` is what the line starts with: the step's id for a step's
    fault, else ``workshop``, ``steps``, ``step_metadata``, ``assets`` or
    ``distribution``.  ``step`` and ``rule`` name them for machines.
    """

    where: str
    message: str
    severity: Severity = "error"
    step: str | None = None
    rule: str | None = None
    whole: bool = False
    """The message is the whole line already (``distribution not found: ...``)."""

    def line(self) -> str:
        """``step-id: what is wrong`` (``step-id: warning: ...`` for a warning)."""
        if self.whole:
            return self.message
        return f"{self.where}: {'warning: ' if self.severity == 'warning' else ''}{self.message}"


class Findings:
    """Where the reader tells what it finds.

    Without ``collect`` (start-up) the first error raises
    :class:`DistributionError`; with it (the check command) errors and
    warnings are kept in :attr:`problems` and the reader goes on.
    """

    def __init__(self, path: Path, *, collect: bool = False) -> None:
        self.path = path
        self.collect = collect
        self.problems: list[Problem] = []

    def report(self, problem: Problem) -> None:
        """Keep a problem; an error stops a start-up at once."""
        if problem.severity == "error" and not self.collect:
            raise DistributionError(self.startup_line(problem))
        self.problems.append(problem)

    def error(
        self, where: str, message: str, *, step: str | None = None, rule: str | None = None, whole: bool = False
    ) -> None:
        """A fault: the distribution cannot be served as it is."""
        self.report(Problem(where, message, "error", step, rule, whole))

    def warning(self, where: str, message: str, *, step: str | None = None) -> None:
        """Something that works but is probably not what the author meant."""
        self.report(Problem(where, message, "warning", step))

    def fatal(self, message: str) -> NoReturn:
        """Not a distribution at all: nothing more can be read, whatever the mode."""
        raise DistributionError(message, fatal=True)

    def startup_line(self, problem: Problem) -> str:
        """The one line a refused start prints: names the file, then the step."""
        step = f"step {problem.step!r}: " if problem.step else ""
        return f"distribution {self.path}: {step}{problem.message}"

    @property
    def errors(self) -> list[Problem]:
        """The faults found."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The warnings found."""
        return [p for p in self.problems if p.severity == "warning"]


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
        raise DistributionError(f"distribution not found: {path}", fatal=True) from None
    except RuntimeError:
        raise DistributionError(f"distribution is a symlink loop: {path}", fatal=True) from None
    except OSError as e:
        raise DistributionError(f"cannot read distribution {path}: {e.strerror}", fatal=True) from None
    if not real.is_file():
        raise DistributionError(f"distribution is not a regular file: {path}", fatal=True)
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


def load_distribution(
    path: Path,
    *,
    step: str | None = None,
    findings: Findings | None = None,
    digests: bool = True,
) -> Distribution:
    """Resolve, check and load a distribution; ``step`` is ``--step`` to check.

    ``findings`` decides whether the first fault stops (the default) or all
    are collected; ``digests=False`` skips hashing the file and its assets
    (the check command serves nothing, and a quick check should not read
    every byte).
    """
    findings = findings if findings is not None else Findings(path)
    real = resolve(path)
    try:
        with real.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DistributionError(f"cannot read distribution {path}: {e.strerror}", fatal=True) from None
    if header != SQLITE_HEADER:
        findings.fatal(f"distribution is not an SQLite file: {path}")
    sha256 = file_sha256(real) if digests else ""
    try:
        with open_readonly(real) as conn:
            workshop = read_workshop(conn, path, findings, digests=digests)
    except sqlite3.DatabaseError as e:
        findings.fatal(f"distribution {path} cannot be read as SQLite: {e}")
    if step is not None and workshop.step(step) is None:
        known = ", ".join(s.id for s in workshop.steps)
        raise DistributionError(
            f"distribution {path} has no step {step!r} (--step / WORKSHOP_STEP); its steps: {known}"
        )
    return Distribution(path=real, sha256=sha256, workshop=workshop)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def read_workshop(
    conn: sqlite3.Connection, path: Path, findings: Findings | None = None, *, digests: bool = True
) -> Workshop:
    """Read and check the distribution tables through an open connection."""
    findings = findings if findings is not None else Findings(path)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != FORMAT_VERSION:
        findings.fatal(
            f"distribution {path} has format version {version} (PRAGMA user_version);"
            f" this backend reads {FORMAT_VERSION}"
        )
    for table, required in REQUIRED_COLUMNS.items():
        have = _columns(conn, table)
        if not have:
            findings.fatal(f"distribution {path} has no table {table!r}")
        missing = sorted(required - have)
        if missing:
            findings.fatal(f"distribution {path}: table {table!r} lacks column(s) {', '.join(missing)}")

    wid, title, version_s, description, navigation = _workshop_row(conn, findings)
    assets = _read_assets(conn, path, findings, digests=digests)
    metadata = _read_metadata(conn, findings)
    steps = _read_steps(conn, findings, metadata)
    unknown = sorted(map(str, set(metadata) - _all_step_ids(conn)))
    if unknown:
        findings.error("step_metadata", f"step_metadata names unknown step(s): {', '.join(unknown)}", whole=True)
    return Workshop(
        id=wid,
        title=title,
        version=version_s,
        description=description,
        navigation=navigation,
        steps=tuple(steps),
        assets=MappingProxyType(assets),
    )


def _workshop_row(conn: sqlite3.Connection, findings: Findings) -> tuple[str, str, str, str, Literal["linear", "free"]]:
    rows = conn.execute("SELECT id, title, version, description, navigation FROM workshop").fetchall()
    if len(rows) != 1:
        findings.error("workshop", f"table 'workshop' must have exactly one row (has {len(rows)})")
        rows = rows[:1] or [("", "", "", "", "linear")]
    wid, title, version_s, description, navigation = rows[0]
    for name, value in (("id", wid), ("title", title), ("version", version_s)):
        if not isinstance(value, str) or not value:
            findings.error("workshop", f"workshop.{name} must be a non-empty string")
    if navigation not in ("linear", "free"):
        findings.error("workshop", f"workshop.navigation must be 'linear' or 'free' (is {navigation!r})")
        navigation = "linear"
    return (
        wid if isinstance(wid, str) else "",
        title if isinstance(title, str) else "",
        version_s if isinstance(version_s, str) else "",
        description if isinstance(description, str) else "",
        navigation,
    )


_Metadata = dict[object, tuple[object, object, object]]


def _read_metadata(conn: sqlite3.Connection, findings: Findings) -> _Metadata:
    """``step_metadata`` rows by step id: (validation, hints, setup); setup is ``'{}'`` without the column."""
    setup_column = "setup" if "setup" in _columns(conn, "step_metadata") else "'{}'"
    metadata: _Metadata = {}
    query = f"SELECT step_id, validation, hints, {setup_column} FROM step_metadata"
    for step_id, validation_s, hints_s, setup_s in conn.execute(query):
        if step_id in metadata:
            findings.error("step_metadata", f"step_metadata has more than one row for step {step_id!r}", whole=True)
            continue
        metadata[step_id] = (validation_s, hints_s, setup_s)
    return metadata


def _all_step_ids(conn: sqlite3.Connection) -> set[str]:
    """Every id in ``steps``, refused ones too (their metadata is not "unknown")."""
    return {sid for (sid,) in conn.execute("SELECT id FROM steps") if isinstance(sid, str)}


def _read_steps(conn: sqlite3.Connection, findings: Findings, metadata: _Metadata) -> list[Step]:
    rows = conn.execute("SELECT id, position, title, markdown, image_tag FROM steps ORDER BY position").fetchall()
    if not rows:
        findings.error("steps", "there are no steps (table 'steps' is empty)")
        return []
    _check_positions(findings, rows)
    steps: list[Step] = []
    seen_ids: set[str] = set()
    for sid, position, stitle, markdown, image_tag in rows:
        if not isinstance(sid, str) or not STEP_ID.match(sid):
            findings.error("steps", f"step id {sid!r} is not a slug ([a-z0-9][a-z0-9-]*)")
            continue
        if sid in seen_ids:
            findings.error(sid, "the id is used by more than one step", step=sid)
            continue
        seen_ids.add(sid)
        fields: dict[str, str] = {}
        for name, value in (("title", stitle), ("markdown", markdown), ("image_tag", image_tag)):
            if not isinstance(value, str) or (name != "markdown" and not value):
                findings.error(sid, f"{name} must be a non-empty string", step=sid)
                value = ""
            fields[name] = value
        validation_s, hints_s, setup_s = metadata.get(sid, ("{}", "[]", "{}"))
        steps.append(
            Step(
                id=sid,
                position=position if type(position) is int else len(steps),
                title=fields["title"],
                markdown=fields["markdown"],
                image_tag=fields["image_tag"],
                validation=_validation(findings, sid, validation_s),
                hints=_hints(findings, sid, hints_s),
                setup=_setup(findings, sid, setup_s),
            )
        )
    return steps


def _check_positions(findings: Findings, rows: list[tuple[object, ...]]) -> None:
    """Positions are exactly 0..n-1: one fault per bad position, not one per step after a gap."""
    by_position: dict[int, str] = {}
    for sid, position, *_ in rows:
        step = sid if isinstance(sid, str) else None
        where = step or "steps"
        if type(position) is not int:
            findings.error(where, f"position must be an integer (is {position!r})", step=step)
            continue
        if position in by_position:
            findings.error(
                where, f"position {position} is also the position of step {by_position[position]!r}", step=step
            )
            continue
        by_position[position] = str(sid)
    expected = set(range(len(rows)))
    wrong = sorted(set(by_position) - expected)
    missing = sorted(expected - set(by_position))
    if wrong or missing:
        findings.error(
            "steps",
            f"step positions must be 0..{len(rows) - 1} without gaps or duplicates"
            f" (missing: {', '.join(map(str, missing)) or 'none'};"
            f" out of range: {', '.join(f'{p} ({by_position[p]!r})' for p in wrong) or 'none'})",
        )


class _Bad:
    """A value that could not be decoded (already reported)."""


_BAD = _Bad()


def _json(findings: Findings, sid: str, column: str, text: object) -> object:
    if not isinstance(text, str):
        findings.error(sid, f"step_metadata.{column} must be JSON text", step=sid)
        return _BAD
    try:
        return json.loads(text)
    except ValueError as e:
        findings.error(sid, f"step_metadata.{column} is not valid JSON ({e})", step=sid)
        return _BAD
    except RecursionError:
        findings.error(sid, f"step_metadata.{column} is nested too deeply", step=sid)
        return _BAD


def _validation(findings: Findings, sid: str, text: object) -> ValidationSpec:
    raw = _json(findings, sid, "validation", text)
    if raw is _BAD:
        return ValidationSpec()

    def report(e: SpecError) -> None:
        findings.error(sid, f"validation: {e}", step=sid, rule=e.rule)

    return parse_validation(raw, report=report)


def _hints(findings: Findings, sid: str, text: object) -> tuple[str, ...]:
    hints = _json(findings, sid, "hints", text)
    if hints is _BAD:
        return ()
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        findings.error(sid, "step_metadata.hints must be a JSON array of strings", step=sid)
        return ()
    return tuple(hints)


def _setup(findings: Findings, sid: str, text: object) -> SetupSpec:
    raw = _json(findings, sid, "setup", text)
    if raw is _BAD:
        return SetupSpec()
    faults = setup_faults(raw)
    for fault in faults:
        findings.error(sid, f"setup: {fault}", step=sid)
    return SetupSpec() if faults else parse_setup(raw)


# -- assets (contract section 3.1) ------------------------------------------------------------


def _read_assets(conn: sqlite3.Connection, path: Path, findings: Findings, *, digests: bool) -> dict[str, Asset]:
    """The optional ``assets`` table, checked: paths, media types, sizes; each asset hashed if asked.

    Only the lengths are read to check sizes (SQLite answers ``length()`` of
    a BLOB without reading it); the bytes are read once, in chunks, to hash
    them, so a distribution at the caps costs one pass over 256 MiB.
    """
    have = _columns(conn, "assets")
    if not have:
        return {}
    missing = sorted(ASSET_COLUMNS - have)
    if missing:
        findings.fatal(f"distribution {path}: table 'assets' lacks column(s) {', '.join(missing)}")
    (count,) = conn.execute("SELECT COUNT(*) FROM assets").fetchone()
    if count > ASSETS_COUNT_MAX:
        findings.error("assets", f"there are {count} assets; a distribution may have at most {ASSETS_COUNT_MAX}")
        return {}
    rows = conn.execute("SELECT path, media_type, typeof(data), length(data) FROM assets ORDER BY path").fetchall()
    assets: dict[str, Asset] = {}
    total = 0
    for asset_path, media_type, kind, size in rows:
        name = asset_path if isinstance(asset_path, str) else repr(asset_path)
        fault = path_fault(asset_path)
        if fault is not None:
            findings.error("assets", f"asset {name!r}: {fault}")
            continue
        if asset_path in assets:
            findings.error("assets", f"asset {name!r}: the path is used twice")
            continue
        fault = media_type_fault(media_type)
        if fault is not None:
            findings.error("assets", f"asset {name!r}: {fault}")
            continue
        if kind != "blob":
            findings.error("assets", f"asset {name!r}: data must be a BLOB (is {kind}; store the file's bytes)")
            continue
        if size > ASSET_MAX:
            findings.error(
                "assets",
                f"asset {name!r} is {size} bytes; an asset may be at most {_mib(ASSET_MAX)} ({ASSET_MAX} bytes)",
            )
            continue
        total += size
        assets[asset_path] = Asset(path=asset_path, media_type=media_type.strip(), size=size)
    if total > ASSETS_TOTAL_MAX:
        findings.error(
            "assets", f"the assets add up to {_mib(total)}; all together they may be at most {_mib(ASSETS_TOTAL_MAX)}"
        )
    if digests:
        for asset_path, asset in list(assets.items()):
            assets[asset_path] = Asset(asset.path, asset.media_type, asset.size, _digest(conn, asset_path))
    return assets


def _digest(conn: sqlite3.Connection, asset_path: str) -> str:
    """The sha256 of one asset, read in chunks (incremental BLOB I/O) when the table has rowids."""
    digest = hashlib.sha256()
    try:
        row = conn.execute("SELECT rowid FROM assets WHERE path = ?", (asset_path,)).fetchone()
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: read it whole (at most ASSET_MAX)
        row = None
    if row is not None:
        with conn.blobopen("assets", "data", row[0], readonly=True) as blob:
            while chunk := blob.read(HASH_CHUNK):
                digest.update(chunk)
    else:
        (data,) = conn.execute("SELECT data FROM assets WHERE path = ?", (asset_path,)).fetchone()
        digest.update(data)
    return digest.hexdigest()


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB".replace(".0 MiB", " MiB")
