"""Who may talk to the backend (contract section 7), decided in one place.

The terminal is a shell in the container: whoever reaches ``/terminal`` runs
commands.  :class:`Guard` checks, for every request, in this order, on the
request head alone (the body is not read before the verdict, see
:mod:`~workshop_backend.http.limits`):

1. the ``Host`` header: exactly one, a port of ASCII digits (else 400), a
   name on the allowlist (DNS rebinding, else 403);
2. for WebSocket handshakes, every request to ``/terminal`` and non-GET
   requests that carry ``Origin``: the origin's host and port equal ``Host``
   exactly, or the origin is one of ``--allowed-origin``; ``null`` is refused;
3. the path: it is judged as the router will see it (percent-decoded
   segments, as Twisted hands them to Klein), and a path that could be read
   two ways (an empty, ``.`` or ``..`` segment, an encoded ``/`` or ``\\``, a
   NUL) is refused with 404 before anything routes it;
4. credentials for everything but the probes and the UI's assets:
   ``Authorization: Bearer`` with the token or the browser key, or, for the
   event stream and the terminal only, a single-use ticket
   (:mod:`~workshop_backend.http.tickets`).  The list of public paths is
   short and explicit, so a route added later is private unless someone
   decides otherwise.

**No cookie opens anything but the page.**  Browsers send a host's cookies
to every port of that host (a student's own web server on another port
receives them), so a cookie is a credential that leaks by design.  The
page cookie only lets the same browser load the page itself (``/``, the
UI's public shell) on a reload; everything the page then does carries the
browser key, which lives in ``localStorage`` (scoped to scheme, host and
port: no other port can read it) and travels as a header.

``?token=`` on a page URL logs in: the page cookie is set and the browser
is redirected to the same path without the token, with the browser key in
the fragment (``#key=...``), which never leaves the browser; the page moves
it to ``localStorage`` and out of the address bar at once.  The browser key
is derived from the token (an HMAC), so every backend of a workspace (the
next step's container too) accepts it without sharing any state.  A page
(:data:`PAGES`) refused for want of credentials answers the small token page
rather than JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode, urlsplit
from weakref import WeakKeyDictionary

from workshop_backend.http.errors import BASE_HEADERS, ApiError
from workshop_backend.http.tickets import Tickets

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

AuthMode = Literal["token", "none"]
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
PAGES = frozenset({"/"})
"""Paths that answer HTML for a browser: the login lands there, a refusal is a page."""
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/favicon.ico", "/static"})
PUBLIC_PREFIXES = ("/static/",)
TICKET_PATHS = frozenset({"/api/v1/events", "/terminal"})
"""The connections a browser opens without headers: a ticket opens them (once)."""
KEY_FRAGMENT = "key"
"""The login redirect's fragment names the browser key: ``/#key=...``."""
PAGE_COOKIE_SECONDS = 30 * 24 * 3600
"""The page cookie opens only the page's public shell: it may outlive the browser session."""
# A DNS name (labels of letters, digits, '-' and '_', an optional final dot).
_NAME = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?$")


def ascii_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``²`` and other digits ``int()`` refuses."""
    return text.isascii() and text.isdigit()


def apply_headers(request: IRequest, csp: bytes) -> None:
    """The security headers every response of the site carries (contract section 7)."""
    headers = request.responseHeaders
    headers.removeHeader(b"server")
    headers.setRawHeaders(b"content-security-policy", [csp])
    for name, value in BASE_HEADERS:
        headers.setRawHeaders(name, [value])


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


def normalise_host(name: str) -> str | None:
    """A host name as we compare it, or None if it is not one.

    Lower case, without a final dot (``localhost.`` is ``localhost``); IPv6
    addresses in brackets, compressed (``[0:0::1]`` is ``[::1]``).
    """
    name = name.strip().lower()
    bracketed = name.startswith("[") and name.endswith("]") and len(name) > 2
    if bracketed or name.count(":") > 1:
        try:
            return f"[{ipaddress.IPv6Address(name[1:-1] if bracketed else name).compressed}]"
        except ValueError:
            return None
    if not _NAME.match(name):
        return None
    return name[:-1] if name.endswith(".") else name


def canonical_path(path: bytes) -> str | None:
    """The path as the router will see it, or None if it could be read two ways.

    Twisted splits the raw path on ``/`` and percent-decodes each segment, and
    Klein routes on the result; the guard decides on that same result.  A
    segment that is empty (but the last), ``.`` or ``..``, or that decodes to
    something with ``/``, ``\\`` or NUL in it, is refused: no route of ours
    needs one, and each is a way to make two readers disagree.
    """
    if not path.startswith(b"/"):
        return None
    segments = [unquote_to_bytes(s) for s in path[1:].split(b"/")]
    for i, segment in enumerate(segments):
        if segment in (b".", b"..") or (not segment and i < len(segments) - 1):
            return None
        if b"/" in segment or b"\\" in segment or b"\x00" in segment:
            return None
    try:
        return "/" + "/".join(s.decode("utf-8") for s in segments)
    except UnicodeDecodeError:
        return None


def normalise_origin(origin: str) -> str | None:
    """``scheme://host:port`` as we compare it, or None if it is not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        return None
    host = normalise_host(parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]")
    if host is None:
        return None
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}:{default if port is None else port}"


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one request: a refusal, and whether it carried credentials."""

    refusal: ApiError | None
    authenticated: bool


@dataclass
class Guard:
    """The access policy: host allowlist, origin check, token, browser key, tickets."""

    auth: AuthMode
    token: str | None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = ()
    tickets: Tickets = field(default_factory=lambda: Tickets(time.monotonic))

    def __post_init__(self) -> None:
        self._any_host = "*" in self.allowed_hosts
        self._hosts = {normalise_host(split_host(h)[0]) for h in self.allowed_hosts if h != "*"} - {None}
        self._origins = {o for o in (normalise_origin(x) for x in self.allowed_origins) if o}
        secret = (self.token or "").encode("utf-8")
        self._page = hmac.new(secret, b"workshop-backend page v2", hashlib.sha256).hexdigest().encode("ascii")
        key = hmac.new(secret, b"workshop-backend browser key v2", hashlib.sha256).digest()
        self.browser_key = base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")
        """What the page keeps in ``localStorage`` and sends as ``Authorization: Bearer``."""
        self._bearers = (self.token or "").encode("utf-8"), self.browser_key.encode("ascii")
        # One verdict per request: the early check (on the head, before the body) and the
        # resource's check see the same answer, and a ticket is redeemed once.
        self._verdicts: WeakKeyDictionary[IRequest, Verdict] = WeakKeyDictionary()

    # -- the checks ---------------------------------------------------------------

    def check(self, request: IRequest) -> ApiError | None:
        """The refusal for this request, or None to let it through."""
        return self.verdict(request).refusal

    def verdict(self, request: IRequest) -> Verdict:
        """The whole verdict for this request, decided once (on its head)."""
        verdict = self._verdicts.get(request)
        if verdict is None:
            verdict = self._verdicts[request] = self._judge(request)
        return verdict

    def _judge(self, request: IRequest) -> Verdict:
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1:
            return Verdict(ApiError(400, "bad_request", "A request carries one Host header, not several."), False)
        host = hosts[0].decode("latin-1") if hosts else ""
        port = split_host(host)[1]
        if port and not (ascii_digits(port) and len(port) <= 5 and int(port) <= 65535):
            return Verdict(
                ApiError(400, "bad_request", "The Host header's port must be a number (ASCII digits)."), False
            )
        if not self.host_allowed(host):
            return Verdict(ApiError(403, "forbidden_host", "This backend does not answer to that host name."), False)
        path = canonical_path(request.path)
        origins = request.requestHeaders.getRawHeaders(b"origin")
        if origins is not None and self.origin_checked(request, path) and not self.one_origin_allowed(origins, host):
            return Verdict(ApiError(403, "forbidden_origin", "Requests from that origin are not allowed."), False)
        if path is None:
            return Verdict(ApiError(404, "not_found", "There is nothing at this address."), False)
        authenticated = self.authenticated(request, path)
        if self.needs_auth(path) and not (
            authenticated or self.logging_in(request, path) or self.page_cookie(request, path)
        ):
            return Verdict(
                ApiError(401, "unauthorized", "An access token is required: open the link you were given."), False
            )
        return Verdict(None, authenticated)

    def logging_in(self, request: IRequest, path: str) -> bool:
        """A page asked for (GET or HEAD) with ``?token=``: :meth:`login` judges the token."""
        return (
            self.auth == "token" and path in PAGES and request.method in (b"GET", b"HEAD") and b"token" in request.args
        )

    @staticmethod
    def refusal_page(request: IRequest, refusal: ApiError) -> bytes | None:
        """The token page, for a page refused for want of credentials; None for JSON."""
        if refusal.status != 401 or canonical_path(request.path) not in PAGES:
            return None
        request.setResponseCode(401)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return TOKEN_PAGE.replace(b"{message}", b"This page needs the access token of its link.")

    def check_handshake(self, request: IRequest) -> tuple[int, str] | None:
        """The terminal bridge's handshake check: the same verdict, as (status, reason)."""
        refusal = self.check(request)
        return None if refusal is None else (refusal.status, refusal.message)

    @staticmethod
    def origin_checked(request: IRequest, path: str | None) -> bool:
        """WebSocket handshakes, the terminal, and anything but GET/HEAD."""
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        return b"websocket" in upgrade or path == "/terminal" or request.method not in (b"GET", b"HEAD")

    def host_allowed(self, host: str) -> bool:
        """Is this ``Host`` header one we answer to?"""
        if self._any_host:
            return True
        name, port = split_host(host)
        if port is not None and not (port == "" or (ascii_digits(port) and len(port) <= 5)):
            return False
        return normalise_host(name) in self._hosts

    def one_origin_allowed(self, origins: list[bytes], host: str) -> bool:
        """Exactly one ``Origin`` header, and an allowed one."""
        return len(origins) == 1 and self.origin_allowed(origins[0].decode("latin-1"), host)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Same origin (host and port equal ``Host``; scheme not compared) or allowed."""
        normal = normalise_origin(origin)
        if normal is None:
            return False
        if normal in self._origins:
            return True
        o_host, o_port = split_host(normal.split("://", 1)[1])
        name, h_port = split_host(host)
        h_host = normalise_host(name)
        if h_host is None or o_host != h_host:
            return False
        if not h_port:
            # No port in Host: the default port of the scheme the client used.
            return o_port in ("80", "443")
        return ascii_digits(h_port) and int(o_port or 0) == int(h_port)

    @staticmethod
    def needs_auth(path: str) -> bool:
        """Everything needs credentials but the probes, the page itself and its assets."""
        return not (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))

    def authenticated(self, request: IRequest, path: str) -> bool:
        """A bearer (the token or the browser key), or a ticket on a ticket path; never a cookie.

        A ticket is redeemed here: call this once per request (:meth:`verdict` does).
        """
        if self.auth == "none":
            return True
        if self.token is None:
            return False
        bearer = request.getHeader(b"authorization")
        if bearer is not None and bearer[:7].lower() == b"bearer ":
            offered = bearer[7:].strip()
            # Both compared, always: the time taken says nothing about which one was close.
            matches = [hmac.compare_digest(offered, secret) for secret in self._bearers]
            return any(matches)
        if path in TICKET_PATHS:
            tickets = request.args.get(b"ticket") or []
            return len(tickets) == 1 and self.tickets.redeem(tickets[0].decode("latin-1"))
        return False

    def page_cookie(self, request: IRequest, path: str) -> bool:
        """The page cookie, for the page itself only (it opens nothing else)."""
        if path not in PAGES or request.method not in (b"GET", b"HEAD"):
            return False
        cookie = request.getCookie(self.cookie_name(request))
        return cookie is not None and hmac.compare_digest(cookie, self._page)

    # -- logging in ---------------------------------------------------------------

    @staticmethod
    def cookie_name(request: IRequest) -> bytes:
        """Per port, so two local workspaces on one host keep their own page cookie."""
        port = getattr(request.getHost(), "port", 0)
        return f"workshop_page_{port}".encode("ascii")

    def login(self, request: IRequest) -> bytes | None:
        """Handle ``?token=`` on a page: cookie and redirect with the browser key, or a 401 page."""
        if not self.logging_in(request, canonical_path(request.path) or ""):
            return None
        request.setHeader(b"Cache-Control", b"no-store")
        offered = request.args[b"token"][0]
        if self.token is None or not hmac.compare_digest(offered, self.token.encode("utf-8")):
            request.setResponseCode(401)
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return TOKEN_PAGE.replace(b"{message}", b"This link's access token is not valid for this workspace.")
        secure = request.isSecure() or (request.getHeader(b"x-forwarded-proto") or b"").lower() == b"https"
        request.addCookie(  # type: ignore[call-arg]  # IRequest omits httpOnly/sameSite; Request has them
            self.cookie_name(request),
            self._page,
            path=b"/",
            max_age=str(PAGE_COOKIE_SECONDS).encode("ascii"),
            httpOnly=True,
            secure=secure,
            sameSite="strict",
        )
        request.setResponseCode(303)
        location = self.clean_location(request.uri.decode("latin-1")) + f"#{KEY_FRAGMENT}={self.browser_key}"
        request.setHeader(b"Location", location.encode("latin-1"))
        return b""

    @staticmethod
    def clean_location(uri: str) -> str:
        """The same path and query without ``token``; always a path on this host.

        Only ever a single ``/`` followed by a path that is not ``/`` or ``\\``:
        browsers read ``//host`` and ``/\\host`` as another host.
        """
        parts = urlsplit(uri)
        path = "/" + parts.path.lstrip("/\\") if parts.path.startswith("/") else "/"
        if any(c in path for c in "\\\r\n\t") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
            path = "/"
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        return path + (f"?{urlencode(query)}" if query else "")


def content_security_policy(frame_ancestors: Iterable[str]) -> bytes:
    """The CSP: our own origin only; inline styles because xterm.js 6 inserts them.

    ``frame_ancestors`` are the ``--allowed-origin`` values; each is written as
    its normal form (``scheme://host:port``), and anything that is not an
    origin is left out, so no value can add a directive of its own.
    """
    origins = dict.fromkeys(o for o in (normalise_origin(x) for x in frame_ancestors) if o)
    ancestors = " ".join(["'self'", *origins])
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
