"""The one error type the API answers with, and the one JSON writer.

Every 4xx leaves the backend as ``{"error": code, "message": sentence}``
(plus any extra fields, e.g. the failing validation of a gated ``next``),
written by :func:`write_json`.  Anything else that escapes a route is a bug:
it is logged with its traceback and the client sees a bare 500.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

JSON_TYPE = b"application/json; charset=utf-8"


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


def encode(value: Any) -> bytes:
    """JSON as we send it: UTF-8, compact, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def write_json(request: IRequest, value: Any, status: int = 200, *, encoded: bytes | None = None) -> bytes:
    """Set the status and JSON headers on ``request``; return the body (``encoded`` if given)."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    return encode(value) if encoded is None else encoded


def not_ready() -> ApiError:
    """What API routes answer before the working copy is open."""
    return ApiError(503, "starting", "The workshop is still starting; try again in a moment.")
