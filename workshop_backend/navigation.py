"""Navigation rules (contract section 4), as pure functions.

The runtime asks :func:`plan` what a request means (which step becomes
current, which gate must pass first, which steps the move completes), runs
the gate if there is one, and then asks :func:`arrive` for the new position.
Nothing here does I/O or reads a clock, so every rule is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from workshop_backend.model import Step, Workshop

Phase = Literal["ready", "transitioning", "completed"]
StepStatus = Literal["locked", "available", "current", "completed"]
ACTIONS = ("next", "previous", "jump", "complete")


class NavigationError(Exception):
    """A move that is refused: an HTTP status, an error code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Position:
    """Where the student is: what the status reports, minus the clock."""

    current: str
    target: str | None
    phase: Phase
    completed: frozenset[str] = field(default_factory=frozenset)
    #: Steps that have been current at some time (a linear workshop lets the
    #: student go back to them even when they have rules that never passed).
    visited: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Plan:
    """What a navigation request will do once its gate (if any) has passed."""

    action: str
    destination: str
    gate: Step | None = None
    completes: tuple[str, ...] = ()
    finish: bool = False


def parse_action(body: object) -> tuple[str, str | None]:
    """Check a navigation request body: ``{"action": ..., "step": ...}``."""
    if not isinstance(body, dict):
        raise NavigationError(400, "bad_request", 'The body must be a JSON object such as {"action": "next"}.')
    action = body.get("action")
    if action not in ACTIONS:
        raise NavigationError(400, "bad_action", f"'action' must be one of {', '.join(ACTIONS)}.")
    unknown = set(body) - {"action", "step"}
    if unknown:
        raise NavigationError(400, "bad_request", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    step = body.get("step")
    if action == "jump":
        if not isinstance(step, str) or not step:
            raise NavigationError(400, "bad_request", "'jump' needs 'step', the id of the step to go to.")
        return action, step
    if step is not None:
        raise NavigationError(400, "bad_request", f"'{action}' takes no 'step'.")
    return action, None


def first_uncompleted(workshop: Workshop, completed: frozenset[str]) -> Step | None:
    """The first step not completed yet, or None when all are."""
    for step in workshop.steps:
        if step.id not in completed:
            return step
    return None


def _leaving(step: Step, position: Position) -> tuple[Step | None, tuple[str, ...]]:
    """The gate to pass and the steps completed by moving on from ``step``."""
    if not step.validation.rules:
        return None, (step.id,)
    if step.validation.gate and step.id not in position.completed:
        return step, ()
    return None, ()


def plan(workshop: Workshop, position: Position, action: str, step_id: str | None = None) -> Plan:
    """What ``action`` means from ``position``; raises :class:`NavigationError`."""
    current = workshop.step(position.current)
    assert current is not None, "the position names a step of the workshop"
    index = current.position
    last = len(workshop.steps) - 1
    if action == "next":
        if index == last:
            raise NavigationError(409, "no_next_step", "This is the last step: there is no next step.")
        gate, completes = _leaving(current, position)
        return Plan(action, workshop.steps[index + 1].id, gate, completes)
    if action == "previous":
        if index == 0:
            raise NavigationError(409, "no_previous_step", "This is the first step: there is no previous step.")
        return Plan(action, workshop.steps[index - 1].id)
    if action == "complete":
        if index != last:
            raise NavigationError(409, "not_last_step", "Only the last step can complete the workshop.")
        gate, completes = _leaving(current, position)
        return Plan(action, current.id, gate, completes, finish=True)
    if action == "jump":
        if step_id is None:
            raise NavigationError(400, "bad_request", "'jump' needs 'step', the id of the step to go to.")
        target = workshop.step(step_id)
        if target is None:
            raise NavigationError(404, "unknown_step", f"There is no step {step_id!r}.")
        if workshop.navigation == "linear" and not _reachable(workshop, position, target):
            raise NavigationError(
                409,
                "step_locked",
                f"Step {step_id!r} is locked: this workshop goes in order; complete the steps before it first.",
            )
        return Plan(action, target.id)
    raise NavigationError(400, "bad_action", f"'action' must be one of {', '.join(ACTIONS)}.")


def _reachable(workshop: Workshop, position: Position, target: Step) -> bool:
    """Linear: the current step, completed or visited steps, and the first uncompleted one."""
    if target.id == position.current or target.id in position.completed or target.id in position.visited:
        return True
    allowed = first_uncompleted(workshop, position.completed)
    return allowed is not None and allowed.id == target.id


def arrive(workshop: Workshop, container_image: str, position: Position, move: Plan) -> Position:
    """The position after ``move``, its gate (if any) having passed."""
    completed = set(position.completed) | set(move.completes)
    if move.gate is not None:
        completed.add(move.gate.id)
    destination = workshop.step(move.destination)
    assert destination is not None
    done = frozenset(completed)
    visited = position.visited | {position.current, destination.id}
    if move.finish:
        return Position(destination.id, None, "completed", done, visited)
    if destination.image_tag == container_image:
        return Position(destination.id, None, "ready", done, visited)
    return Position(destination.id, destination.id, "transitioning", done, visited)


def resume(workshop: Workshop, container_image: str, position: Position) -> Position:
    """A position read back from the working copy, checked against this container.

    A current step of another image means the student moved on and the
    container has not been replaced yet: keep (or restore) ``transitioning``.
    """
    current = workshop.step(position.current)
    assert current is not None
    if position.phase == "completed":
        return replace(position, target=None)
    if current.image_tag != container_image:
        return replace(position, target=current.id, phase="transitioning")
    return replace(position, target=None, phase="ready")


def step_statuses(workshop: Workshop, position: Position) -> dict[str, StepStatus]:
    """The status of every step in the workshop's step list."""
    statuses: dict[str, StepStatus] = {}
    for step in workshop.steps:
        if step.id == position.current:
            statuses[step.id] = "current"
        elif step.id in position.completed:
            statuses[step.id] = "completed"
        elif workshop.navigation == "free" or _reachable(workshop, position, step):
            statuses[step.id] = "available"
        else:
            statuses[step.id] = "locked"
    return statuses
