"""``workshop-backend check FILE``: every problem of a distribution, for the build pipeline (contract 3.2).

It reads the distribution with the very code the daemon starts with
(:func:`~workshop_backend.workshop.distribution.load_distribution`, told to
collect rather than stop at the first fault), then renders every step and
hint with the very renderer the daemon serves them with, and reports what
that rendering finds: relative URLs that name no asset, images that are not
images, markdown that does not render, fences never closed, assets nothing
uses.  Nothing listens, nothing is written, the reactor is never imported.

Output: one line per problem, ``step-id: what is wrong`` (``step-id:
warning: ...`` for a warning), on stdout; a summary on stderr.  With
``--format json``, one JSON document instead.  Exit codes:

- 0: no errors (warnings are allowed: an unused asset does not break a workshop);
- 1: errors: the daemon would refuse it, or a student would meet a fault;
- 2: not a distribution at all (not found, not SQLite, another format,
  missing tables), or a usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from workshop_backend.workshop.distribution import DistributionError, Findings, Problem, load_distribution
from workshop_backend.workshop.model import Workshop

if TYPE_CHECKING:
    from workshop_backend.content.assetlinks import AssetLinks

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_NOT_A_DISTRIBUTION = 2
USAGE = "usage: workshop-backend check FILE [--format text|json]   (or: workshop-backend --check FILE)"


@dataclass
class Report:
    """What the check found in one file."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False
    steps: int = 0
    assets: int = 0

    @property
    def errors(self) -> int:
        """How many errors."""
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        """How many warnings."""
        return sum(p.severity == "warning" for p in self.problems)

    @property
    def exit_code(self) -> int:
        """0 no errors, 1 errors, 2 not a distribution."""
        if self.fatal:
            return EXIT_NOT_A_DISTRIBUTION
        return EXIT_PROBLEMS if self.errors else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The ``--format json`` document."""
        return {
            "distribution": str(self.path),
            "valid": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "steps": self.steps,
            "assets": self.assets,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [
                {
                    "severity": p.severity,
                    "where": p.where,
                    "step": p.step,
                    "rule": p.rule,
                    "message": p.message,
                    "line": p.line(),
                }
                for p in self.problems
            ],
        }

    def summary(self) -> str:
        """One line for a person (stderr)."""
        if self.fatal:
            return f"{self.path}: not a distribution"
        return (
            f"{self.path}: {self.steps} step(s), {self.assets} asset(s):"
            f" {self.errors} error(s), {self.warnings} warning(s)"
        )


def check(path: Path) -> Report:
    """Everything wrong with the distribution at ``path``."""
    findings = Findings(path, collect=True)
    report = Report(path, findings.problems)
    try:
        distribution = load_distribution(path, findings=findings, digests=False)
    except DistributionError as e:
        # Only the faults that leave nothing to read are raised in collect mode.
        report.fatal = True
        findings.problems.append(Problem("distribution", str(e), whole=True))
        return report
    workshop = distribution.workshop
    report.steps, report.assets = len(workshop.steps), len(workshop.assets)
    check_content(workshop, findings)
    # The whole first, then step by step in the workshop's order, then the assets.
    order = {step.id: n for n, step in enumerate(workshop.steps)}
    report.problems.sort(
        key=lambda p: (0, 0) if p.where not in order and p.where != "assets" else (1, order.get(p.where, len(order)))
    )
    return report


def check_content(workshop: Workshop, findings: Findings) -> None:
    """Render every step and hint as the daemon will, and report what the rendering finds."""
    from workshop_backend.content.render import render_hint, render_markdown

    used: set[str] = set()
    for step in workshop.steps:

        def step_html(links: AssetLinks, text: str = step.markdown) -> object:
            return render_markdown(text, links=links)

        _check_text(findings, workshop, step.id, "markdown", step.markdown, step_html, used)
        for index, hint in enumerate(step.hints):

            def hint_html(links: AssetLinks, text: str = hint, index: int = index) -> object:
                return render_hint(text, index, links=links)

            _check_text(findings, workshop, step.id, f"hint {index + 1}", hint, hint_html, used)
    for path in sorted(set(workshop.assets) - used):
        findings.warning("assets", f"asset {path!r} is not used by any step or hint")


def _check_text(
    findings: Findings,
    workshop: Workshop,
    step: str,
    what: str,
    text: str,
    render: Callable[[AssetLinks], object],
    used: set[str],
) -> None:
    from workshop_backend.content.assetlinks import AssetLinks
    from workshop_backend.content.render import unclosed_fence

    links = AssetLinks(workshop.assets)
    try:
        render(links)
    except Exception as e:  # what we are looking for: any text the renderer cannot take
        findings.error(step, f"{what} does not render ({type(e).__name__}: {e})", step=step)
        return
    before = len(findings.problems)
    for ref in links.references:
        if ref.asset is not None:
            used.add(ref.asset.path)
        if ref.asset is None:
            hint = (
                " ('..' is not resolved: store paths from the workshop's root)" if ".." in ref.path.split("/") else ""
            )
            findings.error(step, f"{what}: {ref.kind} {ref.path!r} names no asset{hint}", step=step)
        elif ref.kind == "image" and not ref.asset.is_image:
            findings.error(
                step,
                f"{what}: image {ref.path!r} is {ref.asset.essence}, not an image a browser shows (link to it instead)",
                step=step,
            )
        elif ref.kind == "image" and not (ref.alt or "").strip():
            findings.warning(
                step, f"{what}: image {ref.path!r} has no alt text (describe it for screen readers)", step=step
            )
    line = unclosed_fence(text)
    if line is not None:
        findings.warning(step, f"{what}: the code fence opened on line {line} is never closed", step=step)
    # The same reference twice in one text is one fault.
    found = findings.problems[before:]
    del findings.problems[before:]
    findings.problems.extend(dict.fromkeys(found))


def parse_args(argv: Sequence[str]) -> tuple[Path, str]:
    """``check FILE``, ``--check FILE``, ``--check=FILE``, ``--format json``: (file, format), or ValueError."""
    args = list(argv)
    if args[:1] == ["check"]:
        args = args[1:]
    path: str | None = None
    output = "text"
    while args:
        arg = args.pop(0)
        if arg in ("--check", "--format"):
            if not args:
                raise ValueError(f"{arg} needs a value")
            value = args.pop(0)
        elif arg.startswith(("--check=", "--format=")):
            arg, value = arg.split("=", 1)
        elif arg.startswith("-") and arg != "-":
            raise ValueError(f"unknown option {arg}")
        else:
            arg, value = "--check", arg
        if arg == "--format":
            if value not in ("text", "json"):
                raise ValueError(f"--format must be 'text' or 'json', not {value!r}")
            output = value
        elif path is not None:
            raise ValueError("give one distribution file")
        else:
            path = value
    if not path:
        raise ValueError("no distribution file given")
    return Path(path), output


def main(argv: Sequence[str], *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """The ``check`` command: print the report, answer the exit code."""
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE, file=stdout)
        return EXIT_OK
    try:
        path, output = parse_args(argv)
    except ValueError as e:
        print(f"workshop-backend check: {e}; {USAGE}", file=stderr)
        return EXIT_NOT_A_DISTRIBUTION
    report = check(path)
    if output == "json":
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2), file=stdout)
    else:
        for problem in report.problems:
            print(problem.line(), file=stdout)
        print(report.summary(), file=stderr)
    return report.exit_code


def wants_check(argv: Sequence[str]) -> bool:
    """Does this command line ask for the check command (rather than the daemon)?"""
    return bool(argv) and (argv[0] == "check" or any(a == "--check" or a.startswith("--check=") for a in argv))


__all__ = ["Report", "check", "check_content", "main", "wants_check"]
