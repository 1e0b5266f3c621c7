"""Building distribution files for tests, in contract format 1."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workshop_backend.workshop.distribution import format_sql


@dataclass
class StepDef:
    """One step of a test workshop."""

    id: str
    image: str = "img-a"
    validation: dict[str, Any] | str = field(default_factory=dict)
    hints: list[str] | str = field(default_factory=list)
    markdown: str = ""


def write(
    path: Path,
    steps: list[StepDef],
    *,
    navigation: str = "linear",
    user_version: int = 1,
    workshop_id: str = "test-workshop",
) -> Path:
    """Write a distribution with these steps; JSON given as str is written as is."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(format_sql())
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
