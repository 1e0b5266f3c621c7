"""From what the runner observed to what the student sees: pure, no I/O.

The runner (:mod:`workshop_backend.validation.runner`) does the looking: it
reads a file, runs a command, opens a connection, sends a GET, and records
what happened as an *outcome* (:class:`FileOutcome`, :class:`CommandOutcome`,
:class:`PortOutcome`, :class:`HttpOutcome`).  :func:`evaluate` compares an
outcome with its :class:`~workshop_backend.validation.spec.Rule` and gives a
:class:`RuleResult`; :func:`summarize` gathers a step's results into a
:class:`ValidationResult`, the JSON of contract section 6.

A result carries two texts:

``message``
    The author's text (``"message"`` in the rule), whether the rule passed or
    not: the UI shows it on failure, and may use it as the rule's label
    otherwise.  A rule without one gets a short description of what it checks
    (:func:`describe`), so the UI never shows an empty line.
``detail``
    The backend's own account, for the student and for an author debugging
    the check: what was expected, what was found, the exit code, the tail of
    the output.  Output is decoded leniently, stripped of ANSI escape
    sequences and control characters, and capped (:data:`MAX_OUTPUT` per
    excerpt), so a detail stays around a kilobyte whatever the command
    printed.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from workshop_backend.support.timefmt import parse_rfc3339, rfc3339
from workshop_backend.validation.spec import Rule

MAX_OUTPUT = 1000
"""Characters of output (or file or body content) quoted in one detail."""

BINARY_SHARE = 0.3
"""Output with more than this share of undecodable or control characters is binary."""


# --- outcomes: what the runner saw -------------------------------------------------


@dataclass(frozen=True)
class FileOutcome:
    """What was found at a file rule's path (``path`` is resolved, absolute)."""

    path: str
    exists: bool
    is_file: bool = False
    is_dir: bool = False
    content: bytes = b""
    """The first bytes of a regular file: all of it unless ``truncated``."""
    truncated: bool = False
    size: int | None = None
    error: str | None = None
    """Why the path could not be looked at or read (e.g. ``Permission denied``)."""
    timed_out: bool = False


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended and what it printed (the tail of each stream)."""

    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    error: str | None = None
    """Why the command could not be started at all (e.g. a missing ``cwd``)."""


@dataclass(frozen=True)
class PortOutcome:
    """Whether a TCP connection to the rule's host and port succeeded."""

    connected: bool
    error: str | None = None
    """Why not, in words (``connection refused``, ``cannot resolve host``)."""
    timed_out: bool = False


@dataclass(frozen=True)
class HttpOutcome:
    """The answer to a GET: status, the start of the body, a redirect's target."""

    status: int | None = None
    body: bytes = b""
    truncated: bool = False
    location: str | None = None
    error: str | None = None
    timed_out: bool = False


Outcome = FileOutcome | CommandOutcome | PortOutcome | HttpOutcome


# --- results -----------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict, as the API shows it."""

    id: str
    type: str
    passed: bool
    message: str
    detail: str

    def to_json(self) -> dict[str, object]:
        """``{"id", "type", "passed", "message", "detail"}``."""
        return {"id": self.id, "type": self.type, "passed": self.passed, "message": self.message, "detail": self.detail}

    @classmethod
    def from_json(cls, raw: object) -> RuleResult:
        """The inverse of :meth:`to_json`; :class:`ValueError` if ``raw`` is not one."""
        if not isinstance(raw, dict) or set(raw) != {"id", "type", "passed", "message", "detail"}:
            raise ValueError("a rule result must be an object with id, type, passed, message and detail")
        if not all(isinstance(raw[k], str) for k in ("id", "type", "message", "detail")):
            raise ValueError("a rule result's id, type, message and detail must be strings")
        if not isinstance(raw["passed"], bool):
            raise ValueError("a rule result's passed must be true or false")
        return cls(id=raw["id"], type=raw["type"], passed=raw["passed"], message=raw["message"], detail=raw["detail"])


@dataclass(frozen=True)
class ValidationResult:
    """A step's evaluation: passed when every rule passed (and so when there are none).

    ``checked_at`` is POSIX seconds (when the evaluation started); the JSON
    shows it as RFC 3339 UTC to the second.
    """

    step: str
    passed: bool
    checked_at: float
    duration_ms: int
    results: tuple[RuleResult, ...]

    def to_json(self) -> dict[str, object]:
        """``{"step", "passed", "checked_at", "duration_ms", "results": [...]}`` (contract section 6)."""
        return {
            "step": self.step,
            "passed": self.passed,
            "checked_at": rfc3339(self.checked_at),
            "duration_ms": self.duration_ms,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, raw: object) -> ValidationResult:
        """The inverse of :meth:`to_json` (for results stored as JSON); :class:`ValueError` if malformed."""
        if not isinstance(raw, dict) or set(raw) != {"step", "passed", "checked_at", "duration_ms", "results"}:
            raise ValueError(
                "a validation result must be an object with step, passed, checked_at, duration_ms, results"
            )
        step, passed, checked_at = raw["step"], raw["passed"], raw["checked_at"]
        duration, results = raw["duration_ms"], raw["results"]
        if not isinstance(step, str):
            raise ValueError("a validation result's step must be a string")
        if not isinstance(passed, bool):
            raise ValueError("a validation result's passed must be true or false")
        if not isinstance(checked_at, str):
            raise ValueError("a validation result's checked_at must be an RFC 3339 string")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise ValueError("a validation result's duration_ms must be a non-negative integer")
        if not isinstance(results, list):
            raise ValueError("a validation result's results must be a list")
        return cls(
            step=step,
            passed=passed,
            checked_at=parse_rfc3339(checked_at),
            duration_ms=duration,
            results=tuple(RuleResult.from_json(r) for r in results),
        )


def summarize(step: str, results: Iterable[RuleResult], started: float, finished: float) -> ValidationResult:
    """A step's result from its rules' results and the evaluation's start and end (POSIX seconds)."""
    results = tuple(results)
    return ValidationResult(
        step=step,
        passed=all(r.passed for r in results),
        checked_at=started,
        duration_ms=max(0, round((finished - started) * 1000)),
        results=results,
    )


# --- paths -------------------------------------------------------------------------


def resolve_path(path: str, cwd: str, env: Mapping[str, str] | None = None) -> str:
    """``path`` as the shell in ``cwd`` would see it: ``~`` is ``$HOME``, relative is under ``cwd``."""
    home = (env or {}).get("HOME")
    if home and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    return posixpath.join(cwd, path)


def rule_cwd(rule: Rule, default_cwd: str, env: Mapping[str, str] | None = None) -> str:
    """Where a rule runs: its ``cwd`` (relative to the default one), else the default."""
    if not rule.cwd:
        return default_cwd
    return resolve_path(rule.cwd, default_cwd, env)


# --- cleaning output for a detail --------------------------------------------------

_ANSI = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]              # CSI: colours, cursor movement
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?   # OSC: window titles, hyperlinks
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?        # DCS, SOS, PM, APC strings
    | \x1b[ -/]*[0-~]                      # two- and three-character escapes
    | \x9b[0-?]*[ -/]*[@-~]                # CSI in its 8-bit form
    """,
    re.VERBOSE,
)
# C0 controls but tab and newline, DEL, C1 controls, bidi overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _lines(text: str) -> str:
    """Apply carriage returns as a terminal would (a progress bar shows its last state)."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        parts = [p for p in line.split("\r") if p]
        out.append(parts[-1] if parts else "")
    return "\n".join(out)


def clean_text(data: bytes, limit: int = MAX_OUTPUT, *, tail: bool = True) -> str:
    """``data`` made fit for a detail: at most ``limit`` characters, the end of it or
    (``tail=False``) the start, marked ``…`` where cut.

    Decoded as UTF-8 leniently (bad bytes become U+FFFD), ANSI escape
    sequences stripped, carriage returns applied, other control characters
    removed, surrounding blank lines dropped.  Data that is mostly not text
    shows as ``(N bytes of binary data)``.
    """
    if not data:
        return ""
    window = 4 * limit
    cut = len(data) > window
    if cut and tail:
        chunk = data[-window:]
        # Do not start in the middle of a UTF-8 sequence.
        skip = 0
        while skip < 3 and skip < len(chunk) and 0x80 <= chunk[skip] <= 0xBF:
            skip += 1
        chunk = chunk[skip:]
    elif cut:
        chunk = data[:window]
    else:
        chunk = data
    text = _ANSI.sub("", _decode(chunk))
    if len(_JUNK.findall(text)) > BINARY_SHARE * len(text):
        return f"({len(data)} bytes of binary data)"
    text = _CONTROL.sub("", _lines(text)).strip("\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    if len(text) > limit:
        text = text[-limit:] if tail else text[:limit]
        cut = True
    if cut:
        text = "…" + text if tail else text + "…"
    return text


def _quote(text: str) -> str:
    """A string as a detail quotes it: in double quotes, escapes visible."""
    return json.dumps(text, ensure_ascii=False)


def _host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _seconds(timeout: float) -> str:
    return f"{timeout:g} s"


def _search(pattern: str, text: str) -> bool:
    """Regexes in rules are Python ``re.search`` with ``MULTILINE``: ``^``/``$`` match at lines."""
    return re.search(pattern, text, re.MULTILINE) is not None


# --- evaluation --------------------------------------------------------------------


def describe(rule: Rule) -> str:
    """What a rule checks, in a few words: the message of a rule whose author gave none."""
    if rule.type == "file":
        if rule.contains is not None:
            return f"{rule.path} contains {_quote(rule.contains)}"
        if rule.matches is not None:
            return f"{rule.path} matches {_quote(rule.matches)}"
        return f"{rule.path} exists"
    if rule.type == "command":
        run = rule.run or ""
        run = run if len(run) <= 60 else run[:59] + "…"
        return f"`{run}` exits with {rule.exit_code}"
    if rule.type == "port":
        return f"something accepts connections on {_host_port(rule.host, rule.port)}"
    return f"GET {rule.url} answers {rule.status}"


def evaluate(rule: Rule, outcome: Outcome) -> RuleResult:
    """The verdict on ``rule`` given what the runner saw.

    Raises :class:`TypeError` if the outcome is not the kind the rule's type
    produces (a bug in the caller, not a failing check).
    """
    if rule.type == "file" and isinstance(outcome, FileOutcome):
        passed, detail = _file(rule, outcome)
    elif rule.type == "command" and isinstance(outcome, CommandOutcome):
        passed, detail = _command(rule, outcome)
    elif rule.type == "port" and isinstance(outcome, PortOutcome):
        passed, detail = _port(rule, outcome)
    elif rule.type == "http" and isinstance(outcome, HttpOutcome):
        passed, detail = _http(rule, outcome)
    else:
        raise TypeError(f"a {rule.type} rule cannot be judged from a {type(outcome).__name__}")
    return RuleResult(id=rule.id, type=rule.type, passed=passed, message=rule.message or describe(rule), detail=detail)


def failed(rule: Rule, detail: str) -> RuleResult:
    """A failed result for ``rule`` with the backend's own ``detail`` (no outcome to judge)."""
    return RuleResult(id=rule.id, type=rule.type, passed=False, message=rule.message or describe(rule), detail=detail)


def _file(rule: Rule, out: FileOutcome) -> tuple[bool, str]:
    path = out.path
    if out.timed_out:
        return False, f"timed out after {_seconds(rule.timeout)} reading {path}"
    if out.error is not None:
        return False, f"cannot read {path}: {out.error}"
    if not out.exists:
        return False, f"file not found: {path}"
    wants_content = rule.contains is not None or rule.matches is not None
    if not wants_content:
        kind = "" if out.is_file else " (a directory)" if out.is_dir else " (not a regular file)"
        return True, f"found {path}{kind}"
    if not out.is_file:
        kind = "a directory" if out.is_dir else "not a regular file"
        return False, f"{path} is {kind}, so its content cannot be checked"
    text = _decode(out.content)
    checks: list[str] = []
    if rule.contains is not None:
        if rule.contains not in text:
            return False, f"{path} does not contain {_quote(rule.contains)}{_excerpt(out)}"
        checks.append(f"contains {_quote(rule.contains)}")
    if rule.matches is not None:
        if not _search(rule.matches, text):
            return False, f"{path} does not match {_quote(rule.matches)}{_excerpt(out)}"
        checks.append(f"matches {_quote(rule.matches)}")
    return True, f"{path} {' and '.join(checks)}"


def _excerpt(out: FileOutcome) -> str:
    size = out.size if out.size is not None else len(out.content)
    if size == 0:
        return "; the file is empty"
    searched = f" (only its first {len(out.content)} bytes were searched)" if out.truncated else ""
    return f"{searched}; it begins ({size} bytes in all):\n{clean_text(out.content, tail=False)}"


def _command(rule: Rule, out: CommandOutcome) -> tuple[bool, str]:
    if out.error is not None:
        return False, f"could not run the command: {out.error}"
    if out.timed_out:
        return False, f"timed out after {_seconds(rule.timeout)} (the command and what it started were killed)" + (
            _output(out)
        )
    if out.exit_code is None:
        return False, f"killed by {signal_name(out.signal)}" + _output(out)
    if out.exit_code != rule.exit_code:
        return False, f"exit code {out.exit_code}, expected {rule.exit_code}" + _output(out)
    if rule.stdout is not None:
        if not _search(rule.stdout, _ANSI.sub("", _decode(out.stdout))):
            return False, (
                f"exit code {out.exit_code} as expected, but the output does not match {_quote(rule.stdout)}"
                + _output(out)
            )
        return True, f"exit code {out.exit_code}, output matches {_quote(rule.stdout)}"
    return True, f"exit code {out.exit_code}"


def signal_name(number: int | None) -> str:
    """A signal in words: ``signal 9 (SIGKILL)``."""
    if number is None:
        return "a signal"
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _output(out: CommandOutcome) -> str:
    streams = [
        (name, data, cut)
        for name, data, cut in (
            ("stdout", out.stdout, out.stdout_truncated),
            ("stderr", out.stderr, out.stderr_truncated),
        )
        if data.strip()
    ]
    if not streams:
        return "\n(no output)"
    limit = MAX_OUTPUT // len(streams)
    parts = []
    for name, data, truncated in streams:
        text = clean_text(data, limit)
        if truncated and not text.startswith("…"):
            text = "…" + text
        parts.append(f"\n{name}:\n{text}")
    return "".join(parts)


def _port(rule: Rule, out: PortOutcome) -> tuple[bool, str]:
    where = _host_port(rule.host, rule.port)
    if out.connected:
        return True, f"connected to {where}"
    if out.timed_out:
        return False, f"cannot connect to {where}: timed out after {_seconds(rule.timeout)}"
    return False, f"cannot connect to {where}: {out.error or 'connection failed'}"


def _http(rule: Rule, out: HttpOutcome) -> tuple[bool, str]:
    request = f"GET {rule.url}"
    if out.timed_out:
        return False, f"{request} timed out after {_seconds(rule.timeout)}"
    if out.error is not None or out.status is None:
        return False, f"{request} failed: {out.error or 'no answer'}"
    if out.status != rule.status:
        redirect = f" (a redirect to {out.location})" if out.location else ""
        return False, f"{request} answered {out.status}{redirect}, expected {rule.status}{_body(out)}"
    if rule.body is not None:
        if not _search(rule.body, _decode(out.body)):
            return False, (
                f"{request} answered {out.status} as expected, but the body does not match {_quote(rule.body)}"
                + _body(out)
            )
        return True, f"{request} answered {out.status}, body matches {_quote(rule.body)}"
    return True, f"{request} answered {out.status}"


def _body(out: HttpOutcome) -> str:
    if not out.body.strip():
        return "; the body is empty"
    text = clean_text(out.body, tail=False)
    if out.truncated and not text.endswith("…"):
        text += "…"
    return f"; the body begins:\n{text}"
