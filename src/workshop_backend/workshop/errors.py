"""The refusals of the domain and the application layer, with no HTTP in them.

Each error has a ``code`` (a stable identifier clients may branch on, e.g.
``step_locked``) and a ``message`` (a sentence for the student).  The kind of
refusal is the class; the HTTP layer's one table
(:data:`workshop_backend.http.errors.STATUS`) turns each class into a status,
so the domain never names one.
"""

from __future__ import annotations

from typing import Any


class WorkshopError(Exception):
    """A request the workshop refuses: a stable code and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(WorkshopError):
    """Names something that does not exist (a step, a hint, a state key, a result)."""


class Refused(WorkshopError):
    """Allowed in general, but not now or not from here (a locked step, the last step...)."""


class StepNotCompleted(Refused):
    """A gated move whose gate failed; ``result`` is that validation's result."""

    def __init__(self, result: Any) -> None:
        super().__init__("step_not_completed", "This step is not complete yet: the checks below still fail.")
        self.result = result


class Invalid(WorkshopError):
    """Input that breaks a rule of the workshop's language (a bad state key)."""


class TooLarge(WorkshopError):
    """Over a size limit (a state value over 64 KiB)."""


class Starting(WorkshopError):
    """The working copy is not open yet: try again in a moment."""

    def __init__(self) -> None:
        super().__init__("starting", "The workshop is still starting; try again in a moment.")


class DiskFull(WorkshopError):
    """The workspace's disk is full: a write could not be saved (nothing was lost or corrupted)."""

    def __init__(self) -> None:
        super().__init__(
            "disk_full",
            "The workspace's disk is full, so this could not be saved. Delete some files in the terminal "
            "(to find big ones: du -sh * | sort -h), then try again.",
        )
