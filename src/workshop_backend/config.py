"""Options, as parsed and checked, in one immutable value.

:class:`~workshop_backend.tap.Options` parses flags and environment
variables; :func:`resolve` turns them into :class:`Settings`, checking every
one and loading the distribution, so a bad start stops here with one line
(a :class:`twisted.python.usage.UsageError`) before anything listens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from twisted.python.usage import UsageError

from workshop_backend.http.security import (
    LOOPBACK_HOSTS,
    AuthMode,
    ascii_digits,
    generate_token,
    normalise_host,
    normalise_origin,
    split_host,
)
from workshop_backend.terminal.sessions import DEFAULT_GRACE
from workshop_backend.workshop.distribution import Distribution, DistributionError, load_distribution

DEFAULT_LISTEN = "tcp:8080"
DEFAULT_DISTRIBUTION = "/etc/workshop/workshop.sqlite"
DEFAULT_STATE_DIR = "/var/lib/workshop"
TOKEN_MIN = 16

TokenSource = Literal["WORKSHOP_TOKEN", "token file", "generated", "none"]


@dataclass(frozen=True)
class Settings:
    """Everything the daemon was told, resolved."""

    listen: str
    distribution: Distribution
    state_dir: Path
    state_dir_fallback: bool
    step: str
    ttyd: str | None
    shell: tuple[str, ...]
    auth: AuthMode
    token: str | None
    token_source: TokenSource
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    fresh: bool
    demo: bool
    workdir: str
    log_format: Literal["text", "json"] = "text"
    metrics_listen: str | None = None
    terminal_grace: float = DEFAULT_GRACE
    env: Mapping[str, str] = field(default_factory=dict)


def _pick(flag: str | None, environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """A flag wins over its environment variable, which wins over the default."""
    if flag is not None:
        return flag
    value = environ.get(name)
    if value is not None and value != "":
        return value
    return default


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def resolve_state_dir(value: str | None) -> tuple[Path, bool]:
    """The state dir; the default falls back to a temp dir if not writable."""
    if value is not None:
        path = Path(value)
        if not _writable_dir(path):
            raise UsageError(f"state dir is not a writable directory: {path}")
        return path.resolve(), False
    path = Path(DEFAULT_STATE_DIR)
    if _writable_dir(path):
        return path, False
    return Path(tempfile.mkdtemp(prefix="workshop-backend-")), True


def resolve_shell(value: str | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """``--shell`` (must exist), else the first of $SHELL, /bin/bash, /bin/sh that exists.

    $SHELL is only a default: one inherited from elsewhere that this image
    lacks falls back like an unset one, instead of refusing to start.
    """
    if value is None:
        candidates = [c for c in (environ.get("SHELL"), "/bin/bash", "/bin/sh") if c]
        for candidate in candidates:
            if shutil.which(candidate) is not None:
                return (candidate,)
        raise UsageError(f"no shell found (tried {', '.join(candidates)}); give one with --shell")
    try:
        argv = tuple(shlex.split(value))
    except ValueError as e:
        raise UsageError(f"--shell cannot be parsed ({e}): {value}") from None
    if not argv:
        raise UsageError("--shell is empty")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"shell not found or not executable: {argv[0]}")
    return argv


def resolve_token(auth: str, token_file: str | None, environ: Mapping[str, str]) -> tuple[str | None, TokenSource]:
    """The access token: --token-file, WORKSHOP_TOKEN, WORKSHOP_TOKEN_FILE, or generated."""
    if auth == "none":
        return None, "none"
    source: TokenSource
    if token_file is None and environ.get("WORKSHOP_TOKEN"):
        token, source = environ["WORKSHOP_TOKEN"].strip(), "WORKSHOP_TOKEN"
        where = "WORKSHOP_TOKEN"
    else:
        path = token_file or environ.get("WORKSHOP_TOKEN_FILE") or None
        if path is None:
            return generate_token(), "generated"
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise UsageError(f"cannot read the token file {path}: {reason}") from None
        source, where = "token file", f"the token file {path}"
    if len(token) < TOKEN_MIN or any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError(f"the token in {where} must be at least {TOKEN_MIN} printable characters without spaces")
    return token, source


def resolve_listen(value: str) -> str:
    """Check an endpoint description without listening."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(reactor, value)
    except (ValueError, TypeError, KeyError, IndexError, OSError, ImportError, NotImplementedError) as e:
        # The parsers of the endpoint plugins raise all of these for bad input
        # (ssl: a missing key file is an OSError; systemd: a bad index an IndexError).
        raise UsageError(f"--listen is not a valid endpoint ({e}): {value}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise UsageError(f"--listen port must be from 0 to 65535: {value}")
    return value


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TERMINAL_GRACE = 7 * 24 * 3600.0


def resolve_grace(value: str | None) -> float:
    """``--terminal-grace``: seconds, or a number with ``s``, ``m`` or ``h`` (``90s``, ``30m``, ``2h``)."""
    if value is None:
        return DEFAULT_GRACE
    text = value.strip().lower()
    unit = text[-1:] if text[-1:] in ("s", "m", "h") else ""
    number = text[: len(text) - len(unit)]
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not number or not 0 <= seconds <= MAX_TERMINAL_GRACE:
        raise UsageError(
            f"--terminal-grace must be a duration from 0 to 7 days, such as 600, 90s, 30m or 2h: {value!r}"
        )
    return seconds


def resolve_hosts(flags: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """Host allowlist: flags, else WORKSHOP_ALLOWED_HOSTS, else loopback names."""
    values = list(flags) or [h.strip() for h in environ.get("WORKSHOP_ALLOWED_HOSTS", "").split(",") if h.strip()]
    for host in values:
        if host == "*":
            continue
        # What the Guard cannot read it would silently drop: refuse it here instead.
        name, port = split_host(host)
        if normalise_host(name) is None or (port is not None and not ascii_digits(port)):
            raise UsageError(f"--allowed-host is not a host name: {host!r}")
    return tuple(values) or LOOPBACK_HOSTS


def resolve_origins(flags: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """Extra allowed origins: flags, else WORKSHOP_ALLOWED_ORIGINS."""
    values = list(flags) or [o.strip() for o in environ.get("WORKSHOP_ALLOWED_ORIGINS", "").split(",") if o.strip()]
    for origin in values:
        if normalise_origin(origin) is None:
            raise UsageError(f"--allowed-origin must look like https://host[:port]: {origin!r}")
    return tuple(values)


def resolve_distribution(value: str | None, demo: bool, state_dir: Path, step: str | None) -> tuple[Distribution, str]:
    """Load (and for --demo, first write) the distribution; check --step."""
    if demo:
        from workshop_backend.workshop.demo import write_demo_distribution

        path = state_dir / "demo" / "distribution.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_distribution(path)
    else:
        path = Path(value or DEFAULT_DISTRIBUTION)
    try:
        dist = load_distribution(path, step=step)
    except DistributionError as e:
        raise UsageError(str(e)) from None
    return dist, step or dist.workshop.steps[0].id


def resolve(
    options: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
) -> Settings:
    """Turn parsed options into checked :class:`Settings` (or a UsageError)."""

    def opt(name: str) -> str | None:
        value = options.get(name)
        return value if isinstance(value, str) else None

    demo = bool(options.get("demo"))
    auth = _pick(opt("auth"), environ, "WORKSHOP_AUTH", "token")
    if auth not in ("token", "none"):
        raise UsageError(f"--auth must be 'token' or 'none', not {auth!r}")
    log_format = _pick(opt("log-format"), environ, "WORKSHOP_LOG_FORMAT", "text")
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format must be 'text' or 'json', not {log_format!r}")
    listen = resolve_listen(_pick(opt("listen"), environ, "WORKSHOP_LISTEN", DEFAULT_LISTEN) or DEFAULT_LISTEN)
    metrics_listen = _pick(opt("metrics-listen"), environ, "WORKSHOP_METRICS_LISTEN")
    if metrics_listen is not None:
        metrics_listen = resolve_listen(metrics_listen)
        if metrics_listen == listen:
            raise UsageError("--metrics-listen must differ from --listen: metrics never share the student's port")
    terminal_grace = resolve_grace(_pick(opt("terminal-grace"), environ, "WORKSHOP_TERMINAL_GRACE"))
    state_dir, fallback = resolve_state_dir(_pick(opt("state-dir"), environ, "WORKSHOP_STATE_DIR"))
    shell = resolve_shell(_pick(opt("shell"), environ, "WORKSHOP_SHELL"), environ)
    token, token_source = resolve_token(auth, opt("token-file"), environ)
    hosts = resolve_hosts(allowed_hosts, environ)
    origins = resolve_origins(allowed_origins, environ)
    step_arg = _pick(opt("step"), environ, "WORKSHOP_STEP")
    dist, step = resolve_distribution(
        _pick(opt("distribution"), environ, "WORKSHOP_DISTRIBUTION"), demo, state_dir, step_arg
    )
    if demo:
        workdir = state_dir / "demo" / "workspace"
        workdir.mkdir(parents=True, exist_ok=True)
        cwd = str(workdir)
    else:
        cwd = os.getcwd()
    return Settings(
        listen=listen,
        distribution=dist,
        state_dir=state_dir,
        state_dir_fallback=fallback,
        step=step,
        ttyd=_pick(opt("ttyd"), environ, "WORKSHOP_TTYD"),
        shell=shell,
        auth=auth,  # type: ignore[arg-type]
        token=token,
        token_source=token_source,
        allowed_hosts=hosts,
        allowed_origins=origins,
        fresh=bool(options.get("fresh")),
        demo=demo,
        workdir=cwd,
        log_format=log_format,  # type: ignore[arg-type]
        metrics_listen=metrics_listen,
        terminal_grace=terminal_grace,
        env=dict(environ),
    )
