"""Who may talk to the backend (contract section 7), decided in one place.

The terminal is a shell in the container: whoever reaches ``/terminal`` runs
commands.  :class:`Guard` checks, for every request, in this order:

1. the ``Host`` header against the allowlist (DNS rebinding); exactly one;
2. for WebSocket handshakes, every request to ``/terminal`` and non-GET
   requests that carry ``Origin``: the origin's host and port equal ``Host``
   exactly, or the origin is one of ``--allowed-origin``; ``null`` is refused;
3. the path: it is judged as the router will see it (percent-decoded
   segments, as Twisted hands them to Klein), and a path that could be read
   two ways (an empty, ``.`` or ``..`` segment, an encoded ``/`` or ``\\``, a
   NUL) is refused with 404 before anything routes it;
4. credentials for everything but the probes and the UI's assets: the
   session cookie or ``Authorization: Bearer <token>``, compared in constant
   time.  The list of public paths is short and explicit, so a route added
   later is private unless someone decides otherwise.

``?token=`` on a page URL logs in: a session cookie is set and the browser
is redirected to the same path without the token, so the token leaves the
address bar (and the history) at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from twisted.web.iweb import IRequest

from workshop_backend.errors import ApiError

AuthMode = Literal["token", "none"]
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/static/", "/favicon.ico")


def generate_token() -> str:
    """A fresh access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` (IPv6 in brackets) → lower-cased host and port."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, None
        host, rest = value[: end + 1], value[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` as we compare it, or None if it is not one."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}:{port or default}"


@dataclass
class Guard:
    """The access policy: host allowlist, origin check, token."""

    auth: AuthMode
    token: str | None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._any_host = "*" in self.allowed_hosts
        self._hosts = {split_host(h)[0] for h in self.allowed_hosts if h != "*"}
        self._origins = {o for o in (normalise_origin(x) for x in self.allowed_origins) if o}
        secret = (self.token or "").encode("utf-8")
        self._session = hmac.new(secret, b"workshop-backend session v1", hashlib.sha256).hexdigest()

    # -- the checks ---------------------------------------------------------------

    def check(self, request: IRequest) -> ApiError | None:
        """The refusal for this request, or None to let it through."""
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if not self.host_allowed(host):
            return ApiError(403, "forbidden_host", "This backend does not answer to that host name.")
        origin = request.getHeader(b"origin")
        is_upgrade = (request.getHeader(b"upgrade") or b"").lower() == b"websocket"
        judged = origin is not None and (is_upgrade or request.method not in (b"GET", b"HEAD"))
        if judged and origin is not None and not self.origin_allowed(origin.decode("latin-1"), host):
            return ApiError(403, "forbidden_origin", "Requests from that origin are not allowed.")
        path = request.path.decode("latin-1")
        if self.needs_auth(path) and not self.authenticated(request):
            return ApiError(401, "unauthorized", "An access token is required: open the link you were given.")
        return None

    def host_allowed(self, host: str) -> bool:
        """Is this ``Host`` header one we answer to?"""
        if self._any_host:
            return True
        name, _ = split_host(host)
        return bool(name) and name in self._hosts

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Same origin (host and port equal ``Host``; scheme not compared) or allowed."""
        normal = normalise_origin(origin)
        if normal is None:
            return False
        if normal in self._origins:
            return True
        rest = normal.split("://", 1)[1]
        o_host, o_port = split_host(rest)
        h_host, h_port = split_host(host)
        if h_port is None:
            # No port in Host: the default port of the scheme the client used.
            return o_host == h_host and o_port in ("80", "443")
        return o_host == h_host and o_port == h_port

    @staticmethod
    def needs_auth(path: str) -> bool:
        """The API, the events and the terminal need credentials; probes and assets do not."""
        return path.startswith("/api/") or path == "/terminal"

    def authenticated(self, request: IRequest) -> bool:
        """Session cookie or bearer token, compared in constant time."""
        if self.auth == "none":
            return True
        if self.token is None:
            return False
        bearer = request.getHeader(b"authorization")
        if bearer is not None and bearer[:7].lower() == b"bearer ":
            return hmac.compare_digest(bearer[7:].strip(), self.token.encode("utf-8"))
        cookie = request.getCookie(self.cookie_name(request))
        return cookie is not None and hmac.compare_digest(cookie, self._session.encode("ascii"))

    # -- logging in ---------------------------------------------------------------

    @staticmethod
    def cookie_name(request: IRequest) -> bytes:
        """Per port, so two local workspaces on one host keep their own session."""
        port = getattr(request.getHost(), "port", 0)
        return f"workshop_session_{port}".encode("ascii")

    def login(self, request: IRequest) -> bytes | None:
        """Handle ``?token=`` on a page: cookie and redirect, or a 401 page; None if no token."""
        if self.auth == "none" or b"token" not in request.args:
            return None
        offered = request.args[b"token"][0]
        if self.token is None or not hmac.compare_digest(offered, self.token.encode("utf-8")):
            request.setResponseCode(401)
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return TOKEN_PAGE.replace(b"{message}", b"This link's access token is not valid for this workspace.")
        secure = request.isSecure() or (request.getHeader(b"x-forwarded-proto") or b"").lower() == b"https"
        cast(Any, request).addCookie(
            self.cookie_name(request),
            self._session.encode("ascii"),
            path=b"/",
            httpOnly=True,
            secure=secure,
            sameSite="strict",
        )
        request.setResponseCode(303)
        request.setHeader(b"Location", self.clean_location(request.uri.decode("latin-1")).encode("latin-1"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    @staticmethod
    def clean_location(uri: str) -> str:
        """The same path and query without ``token``; always a local path."""
        parts = urlsplit(uri)
        path = parts.path if parts.path.startswith("/") else "/"
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        return path + (f"?{urlencode(query)}" if query else "")


def content_security_policy(frame_ancestors: Iterable[str]) -> bytes:
    """The CSP: our own origin only; inline styles because xterm.js 6 inserts them."""
    ancestors = " ".join(["'self'", *frame_ancestors])
    return (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    ).encode("ascii")


TOKEN_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Access token required</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}}h1{font-size:1.4rem}</style></head>
<body><h1>Access token required</h1><p>{message}</p>
<p>Open the full link you were given for this workshop (it ends in <code>?token=&hellip;</code>),
or ask your instructor for a new one.</p></body></html>
"""
