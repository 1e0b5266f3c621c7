"""Building distribution files for tests, in contract format 1."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workshop_backend.workshop.distribution import format_sql, optional_format_sql

#: An asset row: (path, media_type, data); anything may be of the wrong type on purpose.
AssetRow = tuple[Any, Any, Any]


@dataclass
class StepDef:
    """One step of a test workshop."""

    id: str
    image: str = "img-a"
    validation: dict[str, Any] | str = field(default_factory=dict)
    hints: list[str] | str = field(default_factory=list)
    markdown: str = ""
    setup: dict[str, Any] | str | None = None
    """None: no ``setup`` value (the column is there only if some step or an asset needs the optional parts)."""


def write(
    path: Path,
    steps: list[StepDef],
    *,
    navigation: str = "linear",
    user_version: int = 1,
    workshop_id: str = "test-workshop",
    assets: list[AssetRow] | None = None,
) -> Path:
    """Write a distribution with these steps; JSON given as str is written as is.

    With ``assets`` (even an empty list) or any step's ``setup``, the optional
    parts of format 1 are added (``format1-optional.sql``); without, the file
    has the three core tables only, as every distribution before them.
    """
    optional = assets is not None or any(step.setup is not None for step in steps)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(format_sql())
        if optional:
            conn.executescript(optional_format_sql())
            for row in assets or []:
                conn.execute("INSERT INTO assets (path, media_type, data) VALUES (?, ?, ?)", row)
        conn.execute(f"PRAGMA user_version = {int(user_version)}")
        conn.execute(
            "INSERT INTO workshop VALUES (?, ?, ?, ?, ?)",
            (workshop_id, "Test Workshop", "1.0.0", "A workshop for tests.", navigation),
        )
        for position, step in enumerate(steps):
            conn.execute(
                "INSERT INTO steps VALUES (?, ?, ?, ?, ?)",
                (step.id, position, f"Step {step.id}", step.markdown or f"# {step.id}\n\nDo things.", step.image),
            )
            validation = step.validation if isinstance(step.validation, str) else json.dumps(step.validation)
            hints = step.hints if isinstance(step.hints, str) else json.dumps(step.hints)
            if optional:
                setup = step.setup if isinstance(step.setup, str) else json.dumps(step.setup or {})
                conn.execute(
                    "INSERT INTO step_metadata (step_id, validation, hints, setup) VALUES (?, ?, ?, ?)",
                    (step.id, validation, hints, setup),
                )
            else:
                conn.execute("INSERT INTO step_metadata VALUES (?, ?, ?)", (step.id, validation, hints))
        conn.commit()
    finally:
        conn.close()
    return path


def file_rule(rule_id: str, path: str, **extra: Any) -> dict[str, Any]:
    """A file rule."""
    return {"id": rule_id, "type": "file", "path": path, "message": f"Create {path}", **extra}


def standard(path: Path, *, navigation: str = "linear") -> Path:
    """Four steps: intro (no rules), gated file check, ungated check, finish; one image."""
    return write(
        path,
        [
            StepDef("intro", hints=["Read the text.", "Really, read it."]),
            StepDef("make-file", validation={"gate": True, "rules": [file_rule("f", "done.txt")]}),
            StepDef("optional", validation={"rules": [file_rule("g", "optional.txt")]}),
            StepDef("finish"),
        ],
        navigation=navigation,
    )
