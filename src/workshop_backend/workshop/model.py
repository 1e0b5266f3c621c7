"""The workshop as the distribution describes it: immutable values.

Loaded once at start (see :mod:`workshop_backend.workshop.distribution`) and shared by
the API, the navigation rules and the validator; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from workshop_backend.validation.spec import ValidationSpec
from workshop_backend.workshop.assets import Asset
from workshop_backend.workshop.setup import SetupSpec

Navigation = Literal["linear", "free"]
Phase = Literal["ready", "transitioning", "completed"]
"""Where the student's run is, as the working copy records it."""
StatusPhase = Literal["starting", "ready", "transitioning", "completed"]
"""The phase the status shows: ``starting`` while the terminal does not answer yet."""


@dataclass(frozen=True)
class Step:
    """One step: its content, the image it runs in, its checks, hints and setup scripts."""

    id: str
    position: int
    title: str
    markdown: str
    image_tag: str
    validation: ValidationSpec
    hints: tuple[str, ...]
    setup: SetupSpec = field(default_factory=SetupSpec)


@dataclass(frozen=True)
class Workshop:
    """The whole workshop; ``steps`` are ordered by position (0..n-1)."""

    id: str
    title: str
    version: str
    description: str
    navigation: Navigation
    steps: tuple[Step, ...]
    assets: Mapping[str, Asset] = field(default_factory=lambda: MappingProxyType({}))
    """By path; empty for a distribution without the optional ``assets`` table."""

    def step(self, step_id: str) -> Step | None:
        """The step with this id, or None."""
        for step in self.steps:
            if step.id == step_id:
                return step
        return None

    def index(self, step_id: str) -> int:
        """The position of a step known to exist."""
        step = self.step(step_id)
        if step is None:
            raise KeyError(step_id)
        return step.position
