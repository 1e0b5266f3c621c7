"""Every error response, written one way.

- :class:`ApiError` is a refusal of the HTTP layer itself (a body that is
  not JSON, a wrong Host, no credentials...).
- :data:`STATUS` is the one table from the application's refusals
  (:mod:`workshop_backend.workshop.errors`) to HTTP statuses;
  :func:`api_error` applies it.
- :func:`write_json` sets the status and the JSON headers of a response
  routed normally; :func:`raw_response` is the same error as a whole HTTP
  response, for refusals written before a request is routed (a body too
  large, a header too long, a request too slow).

Every 4xx leaves the backend as ``{"error": code, "message": sentence}``
(plus any extra fields, e.g. the failing validation of a gated ``next``).
Anything else that escapes a route is a bug: logged with its traceback, and
the client sees a bare 500.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from workshop_backend.workshop.errors import (
    DiskFull,
    Invalid,
    NotFound,
    Refused,
    Starting,
    StepNotCompleted,
    TooLarge,
    WorkshopError,
)

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

JSON_TYPE = b"application/json; charset=utf-8"

STATUS: dict[type[WorkshopError], int] = {
    Invalid: 400,
    NotFound: 404,
    Refused: 409,
    TooLarge: 413,
    DiskFull: 507,
    Starting: 503,
}
"""The application's refusals as HTTP statuses (a subclass takes its base's)."""

#: The reason phrases of the raw responses we write ourselves.
REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Content Too Large",
    401: b"Unauthorized",
    403: b"Forbidden",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}

#: Headers every response carries, however it was written.
BASE_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
)


class ApiError(Exception):
    """A refusal the client should understand: status, code, sentence."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"error": self.code, "message": self.message, **self.extra}


def api_error(error: WorkshopError) -> ApiError:
    """The HTTP form of an application refusal (:data:`STATUS`)."""
    status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
    extra: dict[str, Any] = {}
    if isinstance(error, StepNotCompleted):
        extra["validation"] = error.result.to_json()
    return ApiError(status, error.code, error.message, **extra)


def encode(value: Any) -> bytes:
    """JSON as we send it: UTF-8, compact, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def write_json(request: IRequest, value: Any, status: int = 200, *, encoded: bytes | None = None) -> bytes:
    """Set the status and JSON headers on ``request``; return the body (``encoded`` if given)."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    return encode(value) if encoded is None else encoded


def write_error(request: IRequest, error: ApiError) -> bytes:
    """An error as the response to ``request`` (503s say when to try again)."""
    if error.status == 503:
        request.setHeader(b"Retry-After", b"1")
    return write_json(request, error.body(), error.status)


def raw_response(status: int, code: str, message: str) -> bytes:
    """A whole JSON error response that closes the connection, for refusals before routing."""
    body = encode({"error": code, "message": message})
    head = [
        b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Error")),
        b"Content-Type: " + JSON_TYPE,
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-store",
    ]
    head += [name + b": " + value for name, value in BASE_HEADERS]
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body
