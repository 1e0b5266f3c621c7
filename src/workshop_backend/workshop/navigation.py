"""Navigation rules (contract section 4), as pure functions.

The runtime asks :func:`plan` what a request means (which step becomes
current, which gate must pass first, which steps the move completes), runs
the gate if there is one, and then asks :func:`arrive` for the new position.
Nothing here does I/O or reads a clock, so every rule is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from workshop_backend.workshop.errors import NotFound, Refused
from workshop_backend.workshop.model import Phase, Step, Workshop

StepStatus = Literal["locked", "available", "current", "completed"]
Action = Literal["next", "previous", "jump", "complete"]
NAVIGATION_ACTIONS: tuple[Action, ...] = get_args(Action)


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

    action: Action
    destination: str
    gate: Step | None = None
    completes: tuple[str, ...] = ()
    finish: bool = False


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


def plan(workshop: Workshop, position: Position, action: Action, step_id: str | None = None) -> Plan:
    """What ``action`` means from ``position``; raises :class:`NotFound` or :class:`Refused`."""
    current = workshop.step(position.current)
    assert current is not None, "the position names a step of the workshop"
    index = current.position
    last = len(workshop.steps) - 1
    if action == "next":
        if index == last:
            raise Refused("no_next_step", "This is the last step: there is no next step.")
        gate, completes = _leaving(current, position)
        return Plan(action, workshop.steps[index + 1].id, gate, completes)
    if action == "previous":
        if index == 0:
            raise Refused("no_previous_step", "This is the first step: there is no previous step.")
        return Plan(action, workshop.steps[index - 1].id)
    if action == "complete":
        if index != last:
            raise Refused("not_last_step", "Only the last step can complete the workshop.")
        gate, completes = _leaving(current, position)
        return Plan(action, current.id, gate, completes, finish=True)
    if action == "jump":
        target = workshop.step(step_id) if step_id is not None else None
        if target is None:
            raise NotFound("unknown_step", f"There is no step {step_id!r}.")
        if workshop.navigation == "linear" and not _reachable(workshop, position, target):
            raise Refused(
                "step_locked",
                f"Step {step_id!r} is locked: this workshop goes in order; complete the steps before it first.",
            )
        return Plan(action, target.id)
    raise ValueError(f"not a navigation action: {action!r}")


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
