"""The navigation rules (contract section 4), as pure functions."""

from __future__ import annotations

from typing import cast

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.validation.spec import Rule, ValidationSpec
from workshop_backend.workshop.errors import NotFound, Refused
from workshop_backend.workshop.model import Step, Workshop
from workshop_backend.workshop.navigation import Action, Position, arrive, plan, resume, step_statuses

CHECK = (Rule(id="r", type="file", path="x"),)


def step(sid: str, position: int, image: str = "a", *, gate: bool = False, rules: bool = False) -> Step:
    """A step with or without rules."""
    spec = ValidationSpec(gate=gate, rules=CHECK if rules or gate else ())
    return Step(sid, position, sid.title(), "", image, spec, ())


def workshop(navigation: str = "linear", images: str = "aaaa") -> Workshop:
    """intro (no rules), gated (gate), loose (rules, no gate), last (no rules)."""
    steps = (
        step("intro", 0, images[0]),
        step("gated", 1, images[1], gate=True),
        step("loose", 2, images[2], rules=True),
        step("last", 3, images[3]),
    )
    return Workshop("w", "W", "1", "", navigation, steps)  # type: ignore[arg-type]


def at(current: str, *completed: str, phase: str = "ready") -> Position:
    """A position."""
    return Position(current, None, phase, frozenset(completed))  # type: ignore[arg-type]


class PlanTests(SynchronousTestCase):
    """What a move means."""

    def test_next_from_step_without_rules_completes_it(self) -> None:
        """Moving on from a step without rules completes it; no gate."""
        move = plan(workshop(), at("intro"), "next")
        self.assertEqual((move.destination, move.gate, move.completes), ("gated", None, ("intro",)))

    def test_next_from_gated_step_needs_its_gate(self) -> None:
        """A gated step that has not passed must be evaluated first."""
        w = workshop()
        move = plan(w, at("gated", "intro"), "next")
        self.assertEqual(move.gate, w.step("gated"))
        self.assertEqual(move.completes, ())

    def test_next_from_passed_gated_step(self) -> None:
        """A gated step that already passed is not evaluated again."""
        move = plan(workshop(), at("gated", "intro", "gated"), "next")
        self.assertIsNone(move.gate)

    def test_next_from_ungated_step_with_rules(self) -> None:
        """Rules without a gate neither block nor complete the step."""
        move = plan(workshop(), at("loose", "intro", "gated"), "next")
        self.assertEqual((move.destination, move.gate, move.completes), ("last", None, ()))

    def test_edges(self) -> None:
        """next on the last, previous on the first, complete elsewhere: 409 with the contract's codes."""
        for position, action, code in [
            (at("last"), "next", "no_next_step"),
            (at("intro"), "previous", "no_previous_step"),
            (at("loose"), "complete", "not_last_step"),
        ]:
            with self.assertRaises(Refused) as e:
                plan(workshop(), position, cast(Action, action))
            self.assertEqual(e.exception.code, code)

    def test_complete_on_last(self) -> None:
        """complete on the last step finishes the workshop and completes a rule-less step."""
        move = plan(workshop(), at("last", "intro", "gated", "loose"), "complete")
        self.assertTrue(move.finish)
        self.assertEqual(move.completes, ("last",))

    def test_jump_linear(self) -> None:
        """Linear: completed steps and the first uncompleted one only."""
        w = workshop()
        position = at("intro", "intro")
        self.assertEqual(plan(w, position, "jump", "gated").destination, "gated")
        with self.assertRaises(Refused) as e:
            plan(w, position, "jump", "loose")
        self.assertEqual(e.exception.code, "step_locked")
        back = at("loose", "intro", "gated")
        self.assertEqual(plan(w, back, "jump", "intro").destination, "intro")

    def test_jump_back_to_visited(self) -> None:
        """Linear: a visited step whose (ungated) rules never passed stays reachable."""
        w = workshop()
        position = Position(
            "intro", None, "ready", frozenset({"intro", "gated"}), frozenset({"intro", "loose", "last"})
        )
        self.assertEqual(plan(w, position, "jump", "last").destination, "last")
        self.assertEqual(step_statuses(w, position)["last"], "available")
        self.assertEqual(step_statuses(w, position)["loose"], "available")

    def test_jump_free(self) -> None:
        """Free navigation: anywhere."""
        self.assertEqual(plan(workshop("free"), at("intro"), "jump", "last").destination, "last")

    def test_jump_unknown(self) -> None:
        """An unknown step is NotFound."""
        with self.assertRaises(NotFound) as e:
            plan(workshop("free"), at("intro"), "jump", "nope")
        self.assertEqual(e.exception.code, "unknown_step")


class ArriveTests(SynchronousTestCase):
    """Where a move lands, by image."""

    def test_same_image_in_place(self) -> None:
        """Same image: the move happens in place."""
        w = workshop()
        new = arrive(w, "a", at("intro"), plan(w, at("intro"), "next"))
        self.assertEqual(new, Position("gated", None, "ready", frozenset({"intro"}), frozenset({"intro", "gated"})))

    def test_other_image_transitions(self) -> None:
        """Another image: transitioning, with the target set."""
        w = workshop(images="abbb")
        new = arrive(w, "a", at("intro"), plan(w, at("intro"), "next"))
        self.assertEqual((new.current, new.target, new.phase), ("gated", "gated", "transitioning"))

    def test_back_to_own_image_is_ready_again(self) -> None:
        """Coming back to this container's image clears the transition."""
        w = workshop(images="abbb")
        position = Position("gated", "gated", "transitioning", frozenset({"intro"}))
        new = arrive(w, "a", position, plan(w, position, "previous"))
        self.assertEqual((new.current, new.target, new.phase), ("intro", None, "ready"))

    def test_gate_passed_completes(self) -> None:
        """A gate that passed completes its step."""
        w = workshop()
        position = at("gated", "intro")
        new = arrive(w, "a", position, plan(w, position, "next"))
        self.assertEqual(new.completed, frozenset({"intro", "gated"}))

    def test_finish(self) -> None:
        """complete sets phase completed."""
        w = workshop()
        position = at("last", "intro", "gated", "loose")
        new = arrive(w, "a", position, plan(w, position, "complete"))
        self.assertEqual((new.current, new.phase, new.target), ("last", "completed", None))


class ResumeAndStatusTests(SynchronousTestCase):
    """Positions read back, and the step list."""

    def test_resume_keeps_transitioning(self) -> None:
        """A current step of another image stays transitioning."""
        w = workshop(images="abbb")
        got = resume(w, "a", Position("gated", None, "ready", frozenset()))
        self.assertEqual((got.target, got.phase), ("gated", "transitioning"))

    def test_resume_in_own_image(self) -> None:
        """The new container of the target step is ready."""
        w = workshop(images="abbb")
        got = resume(w, "b", Position("gated", "gated", "transitioning", frozenset({"intro"})))
        self.assertEqual((got.target, got.phase), (None, "ready"))

    def test_resume_completed(self) -> None:
        """A completed workshop stays completed."""
        got = resume(workshop(), "a", Position("last", None, "completed", frozenset()))
        self.assertEqual(got.phase, "completed")

    def test_statuses_linear(self) -> None:
        """current beats completed; the first uncompleted is available; the rest locked."""
        w = workshop()
        self.assertEqual(
            step_statuses(w, at("intro", "intro")),
            {"intro": "current", "gated": "available", "loose": "locked", "last": "locked"},
        )
        self.assertEqual(
            step_statuses(w, at("gated", "intro")),
            {"intro": "completed", "gated": "current", "loose": "locked", "last": "locked"},
        )

    def test_statuses_free(self) -> None:
        """Free: everything not current or completed is available."""
        self.assertEqual(
            step_statuses(workshop("free"), at("loose", "intro")),
            {"intro": "completed", "gated": "available", "loose": "current", "last": "available"},
        )
