"""The embedded demo workshop, written as a distribution file (contract section 3).

``workshop-backend --demo`` serves it so anyone can try the backend without
building a workshop first, and authors get a worked example: ``python -m
workshop_backend.workshop.demo OUT.sqlite`` writes the same file for them to open.

The content lives as package data in ``workshop_backend/workshop/demo/``: one
``NN-stepid.md`` per step (``NN`` is the 1-based position),
``workshop.json`` holding the workshop row and, per step, its title,
validation, hints and setup scripts, and the files it lists as assets
(``images/page.svg``).  It uses the optional parts of format 1 (contract
section 3.1), so authors see them at work.  It is read with :mod:`importlib.resources`, so it works
from an installed wheel as well as from a checkout.

Every step runs in the same image (:data:`DEMO_IMAGE_TAG`), so navigation
always happens in place.  The rules use paths relative to the working
directory: the backend gives the demo a private workspace directory, where
the terminal starts and the rules run, so the demo never touches the user's
own files.

The file is written byte-for-byte the same every time (same statements, same
order, one SQLite library), and ``--demo`` writes it only when its content
changed (a fingerprint beside it says): a backend resuming after a crash
recognizes its working copy by the distribution's sha256.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TextIO

from workshop_backend.support.files import replace_atomically
from workshop_backend.workshop.distribution import FORMAT_VERSION, format_sql, optional_format_sql

DEMO_IMAGE_TAG = "workshop-demo"
"""The image every demo step runs in."""


class DemoContentError(Exception):
    """The packaged demo content is missing or malformed (a packaging bug)."""


@dataclass(frozen=True)
class DemoStep:
    """One step as the content files describe it."""

    id: str
    title: str
    markdown: str
    validation: dict[str, Any]
    hints: tuple[str, ...]
    setup: dict[str, Any]


@dataclass(frozen=True)
class DemoWorkshop:
    """The workshop row and its steps, in order."""

    id: str
    title: str
    version: str
    description: str
    navigation: str
    steps: tuple[DemoStep, ...]
    assets: tuple[tuple[str, str, bytes], ...]
    """(path, media type, bytes), in the order ``workshop.json`` lists them."""


def content_root() -> Traversable:
    """Where the demo's content files are (inside the installed package)."""
    return files("workshop_backend.workshop") / "demo"


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise DemoContentError(f"demo content: {what} must be a non-empty string")
    return value


def load_demo(root: Traversable | None = None) -> DemoWorkshop:
    """Read the demo's content files into values (no checks of the rule language:
    the distribution loader does those, as for any workshop)."""
    root = content_root() if root is None else root
    try:
        raw = json.loads((root / "workshop.json").read_text(encoding="utf-8"))
        row, steps_raw = raw["workshop"], raw["steps"]
        steps = []
        for position, step in enumerate(steps_raw):
            step_id = _text(step["id"], "a step id")
            name = f"{position + 1:02d}-{step_id}.md"
            steps.append(
                DemoStep(
                    id=step_id,
                    title=_text(step["title"], f"the title of {step_id}"),
                    markdown=(root / name).read_text(encoding="utf-8"),
                    validation=dict(step.get("validation", {})),
                    hints=tuple(step.get("hints", [])),
                    setup=dict(step.get("setup", {})),
                )
            )
        assets = tuple(
            (
                _text(asset["path"], "an asset path"),
                _text(asset["media_type"], "an asset's media_type"),
                (root / asset["file"]).read_bytes(),
            )
            for asset in raw.get("assets", [])
        )
        return DemoWorkshop(
            id=_text(row["id"], "workshop.id"),
            title=_text(row["title"], "workshop.title"),
            version=_text(row["version"], "workshop.version"),
            description=str(row.get("description", "")),
            navigation=str(row.get("navigation", "linear")),
            steps=tuple(steps),
            assets=assets,
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DemoContentError(f"demo content unreadable: {e!r}") from None


def _fill(conn: sqlite3.Connection, demo: DemoWorkshop) -> None:
    conn.executescript(format_sql())
    conn.executescript(optional_format_sql())
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO workshop (id, title, version, description, navigation) VALUES (?, ?, ?, ?, ?)",
        (demo.id, demo.title, demo.version, demo.description, demo.navigation),
    )
    for position, step in enumerate(demo.steps):
        conn.execute(
            "INSERT INTO steps (id, position, title, markdown, image_tag) VALUES (?, ?, ?, ?, ?)",
            (step.id, position, step.title, step.markdown, DEMO_IMAGE_TAG),
        )
        conn.execute(
            "INSERT INTO step_metadata (step_id, validation, hints, setup) VALUES (?, ?, ?, ?)",
            (
                step.id,
                json.dumps(step.validation, ensure_ascii=False),
                json.dumps(list(step.hints), ensure_ascii=False),
                json.dumps(step.setup, ensure_ascii=False),
            ),
        )
    conn.executemany("INSERT INTO assets (path, media_type, data) VALUES (?, ?, ?)", demo.assets)
    conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
    conn.execute("COMMIT")


def fingerprint(demo: DemoWorkshop) -> str:
    """What the demo file is made of: its content, the format and the SQLite library that writes it."""
    digest = hashlib.sha256()
    for part in (format_sql(), optional_format_sql(), sqlite3.sqlite_version, repr(demo)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def write_demo_distribution(path: Path) -> bool:
    """Write the demo as a format-1 distribution at ``path``, atomically; False if it is already there.

    The file is built under a temporary name in the same directory, synced,
    then renamed over ``path``: a reader (a backend starting, a CLI copying
    it) sees the old file or the whole new one, never half of one.  A file
    made from the same content (its fingerprint is kept beside it) is left
    alone, so ``--demo`` builds it once, not at every start.  The directory
    must exist.
    """
    demo = load_demo()
    stamp = path.with_name(path.name + ".fingerprint")
    wanted = fingerprint(demo)
    try:
        if path.is_file() and stamp.read_text(encoding="ascii") == wanted:
            return False
    except (OSError, UnicodeDecodeError):
        pass

    def fill(tmp: Path) -> None:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            _fill(conn, demo)
        finally:
            conn.close()

    replace_atomically(path, fill)

    def write_stamp(tmp: Path) -> None:
        tmp.write_text(wanted, encoding="ascii")

    replace_atomically(stamp, write_stamp)
    return True


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``python -m workshop_backend.workshop.demo OUT.sqlite``: write the demo distribution."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args in (["-h"], ["--help"]):
        print(
            "usage: python -m workshop_backend.workshop.demo OUT.sqlite  (writes the demo workshop distribution)",
            file=out,
        )
        return 0
    if len(args) != 1 or not args[0]:
        print("usage: python -m workshop_backend.workshop.demo OUT.sqlite", file=err)
        return 2
    target = Path(args[0])
    try:
        write_demo_distribution(target)
    except OSError as e:
        print(f"error: cannot write {target}: {e.strerror or e}", file=err)
        return 1
    except (sqlite3.Error, DemoContentError) as e:
        print(f"error: cannot write {target}: {e}", file=err)
        return 1
    print(f"wrote the demo workshop to {target}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
