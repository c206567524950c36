"""Every error the server answers with, and the one place they become wire JSON.

Exception tree::

    ApiError                 status + JSON body {"error": {"type", "message", "details", "extra_info"}}
    ├── BadRequest           400 (malformed body, bad query value, bad envelope key)
    ├── Unauthorized         401 (missing / wrong auth token)
    ├── Forbidden            403 (path escape, foreign Origin, rebinding Host)
    ├── NotFound             404
    ├── Conflict             409
    └── PayloadTooLarge      413
    PromptRejected           400 with ComfyUI's validation shape ({"error": ..., "node_errors": ...})
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = [
    "ApiError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "PayloadTooLarge",
    "PromptRejected", "error_body", "error_middleware", "read_json",
]

log = logging.getLogger("loom.server")


def error_body(type_: str, message: str, details: str = "", extra_info: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """ComfyUI's error object: `{"type", "message", "details", "extra_info"}`."""
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


class ApiError(Exception):
    """An HTTP error with a JSON body; `status` and `type_` pick the code and the error type."""

    status = 500
    type_ = "server_error"

    def __init__(self, message: str, details: str = "", *, type_: str | None = None,
                 extra_info: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if type_ is not None:
            self.type_ = type_
        self.extra_info = extra_info or {}

    def to_wire(self) -> dict[str, Any]:
        return {"error": error_body(self.type_, self.message, self.details, self.extra_info)}

    def response(self) -> web.Response:
        return web.json_response(self.to_wire(), status=self.status)


class BadRequest(ApiError):
    status = 400
    type_ = "bad_request"


class Unauthorized(ApiError):
    status = 401
    type_ = "unauthorized"


class Forbidden(ApiError):
    status = 403
    type_ = "forbidden"


class NotFound(ApiError):
    status = 404
    type_ = "not_found"


class Conflict(ApiError):
    status = 409
    type_ = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    type_ = "payload_too_large"


class PromptRejected(Exception):
    """Validation failed; `wire` is exactly ComfyUI's 400 body (`error` + `node_errors`)."""

    def __init__(self, wire: dict[str, Any]) -> None:
        super().__init__(str(wire.get("error")))
        self.wire = wire


async def read_json(request: web.Request, *, what: str = "body", required: bool = True) -> Any:
    """The request's JSON body; a BadRequest naming the route when it is missing or not JSON."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest(f"{request.method} {request.path}: the {what} is empty",
                             "send a JSON document with Content-Type: application/json", type_="invalid_json")
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"{request.method} {request.path}: the {what} is not valid JSON", str(exc),
                         type_="invalid_json") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a finite number)")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError / PromptRejected / stray exceptions into JSON; nothing leaks as an HTML 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except PromptRejected as exc:
        return web.json_response(exc.wire, status=400)
    except web.HTTPRequestEntityTooLarge as exc:
        return PayloadTooLarge(f"{request.path}: request body too large", exc.text or "",
                               extra_info={"max_bytes": request.app._client_max_size}).response()
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            body = {"error": error_body(exc.reason.lower().replace(" ", "_"),
                                        f"{request.method} {request.path}: {exc.reason}")}
            return web.json_response(body, status=exc.status, headers={
                k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")})
        raise
    except Exception as exc:  # a bug: log it, answer JSON
        log.exception("unhandled error in %s %s", request.method, request.path)
        return web.json_response({"error": error_body("server_error", f"{type(exc).__name__}: {exc}",
                                                      "this is a Loom bug; the server log has the traceback")},
                                 status=500)
