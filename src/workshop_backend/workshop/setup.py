"""A step's setup scripts (contract section 3.1): ``step_metadata.setup``, parsed and checked.

::

    {"background": "apt-get install -y nginx", "foreground": "cd /srv", "timeout": 120}

``background`` runs once when the step becomes current in a container,
detached from any terminal (Killercoda's ``background``, Instruqt's setup
script); ``foreground`` is typed into the student's terminal once
(Killercoda's ``foreground``); ``timeout`` bounds the background script
(default 300 s).  Every key is optional; ``{}`` means no setup.

Pure: the distribution reader reports what :func:`setup_faults` finds, like
any other schema fault, and the runtime gets a :class:`SetupSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT = 300.0
"""Seconds a background script may run when the author gives no ``timeout``."""
MAX_TIMEOUT = 3600.0
"""Seconds a background script may be given at most."""
SCRIPT_MAX = 64 * 1024
"""Characters of one script, at most (a script, not a payload: ship files as assets)."""
KEYS = ("background", "foreground", "timeout")


class SetupError(ValueError):
    """A ``setup`` value that cannot be used; ``faults`` says every reason, one sentence each."""

    def __init__(self, faults: list[str]) -> None:
        super().__init__("; ".join(faults))
        self.faults = faults


@dataclass(frozen=True)
class SetupSpec:
    """A step's setup; both scripts None means the step has none."""

    background: str | None = None
    foreground: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def empty(self) -> bool:
        """No script at all."""
        return self.background is None and self.foreground is None


def _script_fault(key: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"'{key}' must be a string (the script's text)"
    if not value.strip():
        return f"'{key}' is empty (leave the key out instead)"
    if len(value) > SCRIPT_MAX:
        return f"'{key}' is longer than {SCRIPT_MAX // 1024} KiB (ship large files as assets)"
    if "\x00" in value:
        return f"'{key}' has a NUL character"
    return None


def setup_faults(raw: object) -> list[str]:
    """Everything wrong with a decoded ``setup`` value, one sentence each (empty: it is good)."""
    if not isinstance(raw, dict):
        return ['setup must be a JSON object such as {"background": "..."}']
    faults: list[str] = []
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        faults.append(f"unknown key(s) in setup: {', '.join(unknown)} (known: {', '.join(KEYS)})")
    for key in ("background", "foreground"):
        if key in raw:
            fault = _script_fault(key, raw[key])
            if fault:
                faults.append(fault)
    if "timeout" in raw:
        timeout = raw["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
            faults.append(f"'timeout' must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}")
        elif "background" not in raw:
            faults.append("'timeout' is set but there is no 'background' script for it to bound")
    return faults


def parse_setup(raw: object) -> SetupSpec:
    """A decoded ``setup`` value as a :class:`SetupSpec`, or :class:`SetupError` with every fault."""
    faults = setup_faults(raw)
    if faults:
        raise SetupError(faults)
    assert isinstance(raw, dict)
    return SetupSpec(
        background=raw.get("background"),
        foreground=raw.get("foreground"),
        timeout=float(raw.get("timeout", DEFAULT_TIMEOUT)),
    )


__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "SCRIPT_MAX", "SetupError", "SetupSpec", "parse_setup", "setup_faults"]
