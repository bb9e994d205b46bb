"""One JSON error shape for every failure: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.disk_full import disk_full_reason
from service.runtime.job_db import JobDatabaseUnavailable

log = logging.getLogger(__name__)

# Location prefixes FastAPI puts in front of the field name.
_LOCATION_PREFIXES = {"body", "query", "path", "header", "cookie", "form", "file"}
# Retry-After of a 503 while the job database does not answer (a PostgreSQL restart takes seconds).
JOB_DATABASE_RETRY_S = 5


class APIError(Exception):
    """An error the client can act on; raised anywhere, rendered by the app's handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON error response with the standard shape."""
    return JSONResponse(error_body(code, message, field), status_code=status, headers=dict(headers or {}))


def field_name(loc: Sequence[int | str]) -> str | None:
    """``("body", "params", "epochs")`` -> ``"params.epochs"``; ``("body",)`` -> None."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    return ".".join(parts) or None


def validation_error(errors: Sequence[Mapping[str, Any]], status: int = 422) -> APIError:
    """Turn pydantic/FastAPI validation errors into one APIError naming the first bad field."""
    if not errors:
        return APIError(status, "validation_error", "invalid request")
    first = errors[0]
    field = field_name(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return APIError(status, "validation_error", message, field)


def insufficient_storage(exc: BaseException) -> APIError | None:
    """507 for an error that is a write running out of disk space (or quota), None for any other error.

    Every store writes to a temporary name first and rolls back on failure, so the request changed nothing.
    """
    reason = disk_full_reason(exc)
    if reason is None:
        return None
    message = f"insufficient storage on the server ({reason}); nothing was changed: free space and retry"
    return APIError(507, "insufficient_storage", message)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":
        # A body that is not JSON at all is a malformed request, not a bad field (the loc is a byte offset).
        return await _api_error(
            request, APIError(400, "invalid_json", f"body is not valid JSON: {errors[0].get('msg')}")
        )
    return await _api_error(request, validation_error(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, _code_for(exc.status_code), message, None, exc.headers)


async def _job_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobDatabaseUnavailable)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": str(JOB_DATABASE_RETRY_S)}
    return error_response(503, "job_database_unavailable", f"{exc}; retry shortly", None, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are turned into 500s by the request middleware."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(JobDatabaseUnavailable, _job_database_unavailable)
