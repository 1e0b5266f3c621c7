"""The rule language of contract section 6, parsed and checked.

A distribution whose ``step_metadata.validation`` does not parse into a
:class:`ValidationSpec` is a bad distribution: the loader turns a
:class:`SpecError` into a start-up error that names the step and the rule, so
an author learns about a typo before a student does.  Unknown keys are
refused for the same reason (``"contain"`` instead of ``"contains"`` would
otherwise make a check that can never fail).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

RuleType = Literal["file", "command", "port", "http"]

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TIMEOUT = 300.0


class SpecError(ValueError):
    """A validation spec that cannot be used; the message names the rule, ``rule`` its id (if it has one)."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Rule:
    """One check.  Fields that do not apply to ``type`` are left at None."""

    id: str
    type: RuleType
    message: str = ""
    cwd: str | None = None
    # file
    path: str | None = None
    contains: str | None = None
    matches: str | None = None
    # command
    run: str | None = None
    exit_code: int = 0
    stdout: str | None = None
    # port
    port: int | None = None
    host: str = "127.0.0.1"
    # http
    url: str | None = None
    status: int = 200
    body: str | None = None
    # command, port, http
    timeout: float = 10.0


@dataclass(frozen=True)
class ValidationSpec:
    """A step's validation: whether it gates ``next``, how often to watch."""

    gate: bool = False
    watch: float | None = None
    rules: tuple[Rule, ...] = field(default_factory=tuple)


_COMMON = {"id", "type", "message", "cwd"}
_KEYS: dict[str, set[str]] = {
    "file": _COMMON | {"path", "contains", "matches"},
    "command": _COMMON | {"run", "timeout", "exit_code", "stdout"},
    "port": _COMMON | {"port", "host", "timeout"},
    "http": _COMMON | {"url", "status", "body", "timeout"},
}
_DEFAULT_TIMEOUT = {"file": 10.0, "command": 10.0, "port": 5.0, "http": 10.0}


def _string(raw: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(f"{where}: '{key}' is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise SpecError(f"{where}: '{key}' must be a non-empty string")
    return value


def _regex(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = _string(raw, key, where)
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise SpecError(f"{where}: '{key}' is not a valid regular expression ({e})") from None
    return value


def _integer(raw: dict[str, Any], key: str, where: str, default: int | None, lo: int, hi: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SpecError(f"{where}: '{key}' must be an integer from {lo} to {hi}")
    return value


def _timeout(raw: dict[str, Any], where: str, default: float) -> float:
    value = raw.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise SpecError(f"{where}: 'timeout' must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}")
    return float(value)


def parse_rule(raw: object, index: int) -> Rule:
    """Parse one rule; ``index`` names it in errors when its id is unusable."""
    where = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a JSON object")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise SpecError(f"{where}: 'id' must match [A-Za-z0-9][A-Za-z0-9._-]* (at most 64 characters)")
    try:
        return _parse_rule(raw, rule_id)
    except SpecError as e:
        raise SpecError(str(e), rule_id) from None


def _parse_rule(raw: dict[str, Any], rule_id: str) -> Rule:
    where = f"rule '{rule_id}'"
    rtype = raw.get("type")
    if rtype not in _KEYS:
        raise SpecError(f"{where}: 'type' must be one of file, command, port, http (got {rtype!r})")
    unknown = sorted(set(raw) - _KEYS[rtype])
    if unknown:
        raise SpecError(f"{where}: unknown key(s) for a {rtype} rule: {', '.join(unknown)}")
    message = _string(raw, "message", where) or ""
    cwd = _string(raw, "cwd", where)
    if rtype == "file":
        return Rule(
            id=rule_id,
            type="file",
            message=message,
            cwd=cwd,
            path=_string(raw, "path", where, required=True),
            contains=_string(raw, "contains", where),
            matches=_regex(raw, "matches", where),
        )
    if rtype == "command":
        exit_code = _integer(raw, "exit_code", where, 0, 0, 255)
        assert exit_code is not None
        return Rule(
            id=rule_id,
            type="command",
            message=message,
            cwd=cwd,
            run=_string(raw, "run", where, required=True),
            exit_code=exit_code,
            stdout=_regex(raw, "stdout", where),
            timeout=_timeout(raw, where, _DEFAULT_TIMEOUT["command"]),
        )
    if rtype == "port":
        host = _string(raw, "host", where) or "127.0.0.1"
        return Rule(
            id=rule_id,
            type="port",
            message=message,
            cwd=cwd,
            port=_integer(raw, "port", where, None, 1, 65535) or _missing(where, "port"),
            host=host,
            timeout=_timeout(raw, where, _DEFAULT_TIMEOUT["port"]),
        )
    url = _string(raw, "url", where, required=True)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"{where}: 'url' must be an absolute http:// or https:// URL")
    status = _integer(raw, "status", where, 200, 100, 599)
    assert status is not None
    return Rule(
        id=rule_id,
        type="http",
        message=message,
        cwd=cwd,
        url=url,
        status=status,
        body=_regex(raw, "body", where),
        timeout=_timeout(raw, where, _DEFAULT_TIMEOUT["http"]),
    )


def _missing(where: str, key: str) -> int:
    raise SpecError(f"{where}: '{key}' is required")


def _raise(error: SpecError) -> None:
    raise error


def parse_validation(raw: object, report: Callable[[SpecError], None] = _raise) -> ValidationSpec:
    """Parse a step's ``validation`` JSON value (already decoded).

    Every fault goes to ``report``: by default it raises (the first fault
    stops), the check command's collects and returns, and parsing goes on
    without the faulty part (a bad rule is left out, a bad ``watch`` is
    none), so one run finds every fault of a step.
    """
    if not isinstance(raw, dict):
        report(SpecError("validation must be a JSON object"))
        return ValidationSpec()
    unknown = sorted(set(raw) - {"gate", "watch", "rules"})
    if unknown:
        report(SpecError(f"unknown key(s) in validation: {', '.join(unknown)}"))
    gate = raw.get("gate", False)
    if not isinstance(gate, bool):
        report(SpecError("'gate' must be true or false"))
        gate = False
    watch = raw.get("watch")
    if watch is not None and (isinstance(watch, bool) or not isinstance(watch, (int, float)) or not 1 <= watch <= 3600):
        report(SpecError("'watch' must be a number of seconds from 1 to 3600, or absent"))
        watch = None
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        report(SpecError("'rules' must be a JSON array"))
        rules_raw = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, rule_raw in enumerate(rules_raw):
        try:
            rule = parse_rule(rule_raw, index)
        except SpecError as e:
            report(e)
            continue
        if rule.id in seen:
            report(SpecError(f"rule '{rule.id}': the id is used twice", rule.id))
            continue
        seen.add(rule.id)
        rules.append(rule)
    if gate and not rules_raw:
        report(SpecError("'gate' is true but there are no rules"))
    if watch is not None and not rules_raw:
        report(SpecError("'watch' is set but there are no rules"))
    return ValidationSpec(gate=gate, watch=float(watch) if watch is not None else None, rules=tuple(rules))
