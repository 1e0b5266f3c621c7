"""The JSON shapes of contract section 4: application values in, dicts out.

The application layer answers with values (:class:`Status`,
:class:`StepView`...); only this module knows how the API spells them.  The
event stream uses the same shapes (:func:`event_data`), so a ``status``
event and ``GET /api/v1/status`` never disagree.
"""

from __future__ import annotations

import json
import math
from typing import Any

from workshop_backend.application.runtime import Status, StepProgress, StepView
from workshop_backend.application.setup import SetupStatus
from workshop_backend.state.store import StateEntry
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.terminal.sessions import TerminalInfo
from workshop_backend.validation.evaluate import ValidationResult
from workshop_backend.workshop.model import Workshop
from workshop_backend.workshop.navigation import StepStatus


def whole_seconds(value: float | None) -> float | int | None:
    """Whole seconds as an integer (``5``, not ``5.0``)."""
    return int(value) if value is not None and math.isfinite(value) and value.is_integer() else value


def status_body(status: Status) -> dict[str, Any]:
    """``GET /api/v1/status`` and the ``status`` event."""
    return {
        "workshop": status.workshop,
        "current_step": status.current_step,
        "container_step": status.container_step,
        "target_step": status.target_step,
        "phase": status.phase,
        "step_index": status.step_index,
        "step_count": status.step_count,
        "completed_steps": list(status.completed_steps),
        "terminal": status.terminal,
        "started_at": status.started_at,
        "problems": list(status.problems),
        "setup": None if status.setup is None else setup_body(status.setup),
    }


def setup_body(setup: SetupStatus) -> dict[str, Any]:
    """A step's setup scripts: in the status, the ``setup`` event and ``POST .../setup``."""
    return {
        "step": setup.step,
        "state": setup.state,
        "exit_code": setup.exit_code,
        "timed_out": setup.timed_out,
        "message": setup.message,
        "output": setup.output,
        "started_at": setup.started_at,
        "finished_at": setup.finished_at,
        "foreground": setup.foreground,
    }


def workshop_body(workshop: Workshop, statuses: dict[str, StepStatus]) -> dict[str, Any]:
    """``GET /api/v1/workshop``."""
    return {
        "id": workshop.id,
        "title": workshop.title,
        "version": workshop.version,
        "description": workshop.description,
        "navigation": workshop.navigation,
        "steps": [
            {"id": s.id, "position": s.position, "title": s.title, "status": statuses[s.id]} for s in workshop.steps
        ],
    }


def step_body(view: StepView) -> dict[str, Any]:
    """``GET /api/v1/steps/{id}``."""
    step = view.step
    spec = step.validation
    return {
        "id": step.id,
        "position": step.position,
        "title": step.title,
        "markdown": step.markdown,
        "html": view.html,
        "hints": len(step.hints),
        "validation": {"gate": spec.gate, "rules": len(spec.rules), "watch": whole_seconds(spec.watch)},
        "previous": view.previous,
        "next": view.next,
    }


def hint_body(index: int, html: str) -> dict[str, Any]:
    """``GET /api/v1/steps/{id}/hints/{n}``."""
    return {"index": index, "html": html}


def progress_body(steps: list[StepProgress]) -> dict[str, Any]:
    """``GET /api/v1/progress``."""
    return {
        "steps": [
            {
                "step": p.step,
                "status": p.status,
                "viewed_at": p.viewed_at,
                "completed_at": p.completed_at,
                "attempts": p.attempts,
                "hints_revealed": p.hints_revealed,
            }
            for p in steps
        ]
    }


def state_all_parts(pages: list[tuple[str, str]], first: bool) -> bytes:
    """A piece of ``GET /api/v1/state``'s ``{"state": {...}}``: stored JSON text is passed on as it is.

    The values were encoded by the backend itself when they were stored, so
    they are not decoded and encoded again (which would hold every value
    twice, as Python objects and as text).
    """
    parts = [("" if first and i == 0 else ",") + json.dumps(key) + ":" + value for i, (key, value) in enumerate(pages)]
    return "".join(parts).encode("utf-8")


STATE_ALL_HEAD = b'{"state":{'
STATE_ALL_TAIL = b"}}"


def state_body(entry: StateEntry) -> dict[str, Any]:
    """``GET``/``PUT /api/v1/state/{key}``."""
    return {"key": entry.key, "value": entry.value, "updated_at": entry.updated_at}


def terminal_body(info: TerminalInfo) -> dict[str, Any]:
    """One terminal of ``GET /api/v1/terminals``."""
    return {
        "id": info.id,
        "number": info.number,
        "state": info.state,
        "clients": info.clients,
        "created_at": rfc3339(info.created_at),
        "detached_at": None if info.detached_at is None else rfc3339(info.detached_at),
        "expires_at": None if info.expires_at is None else rfc3339(info.expires_at),
        "output_bytes": info.output_bytes,
        "buffered_bytes": info.buffered_bytes,
        "skipped_bytes": info.skipped_bytes,
        "paused": info.paused,
        "close_code": info.close_code,
    }


def terminals_body(terminals: list[TerminalInfo], limit: int) -> dict[str, Any]:
    """``GET /api/v1/terminals``."""
    return {"terminals": [terminal_body(info) for info in terminals], "limit": limit}


def event_data(data: object) -> object:
    """An event's data as JSON: application values in their API shape, the rest as they are."""
    if isinstance(data, Status):
        return status_body(data)
    if isinstance(data, SetupStatus):
        return setup_body(data)
    if isinstance(data, ValidationResult):
        return data.to_json()
    return data
