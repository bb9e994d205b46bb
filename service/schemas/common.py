"""Shapes shared by every router: the error body and the ``responses=`` entries that document it."""

from __future__ import annotations

from collections import defaultdict
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

ErrorDoc = tuple[int, str, str, str | None]
"""One documented error answer: status, code, an example message and the field it names (or None)."""

UNAUTHORIZED: ErrorDoc = (
    401,
    "unauthorized",
    "missing or invalid API key; send 'Authorization: Bearer <key>'",
    "Authorization",
)
NOT_READY: ErrorDoc = (503, "not_ready", "no model version is active yet", None)
JOB_DATABASE_UNAVAILABLE: ErrorDoc = (
    503,
    "job_database_unavailable",
    "the job database does not answer: couldn't get a connection after 10.00 sec; retry shortly",
    None,
)
# Any route that writes (a dataset, a job record, the active pointer) when the server's disk is full.
INSUFFICIENT_STORAGE: ErrorDoc = (
    507,
    "insufficient_storage",
    "insufficient storage on the server (no space left on the device); nothing was changed: free space and"
    " retry",
    None,
)
# The catch-all for a field FastAPI itself rejects (a path or query parameter out of range, ...).
_GENERIC: dict[int, ErrorDoc] = {
    401: UNAUTHORIZED,
    422: (422, "validation_error", "limit: Input should be less than or equal to 1000", "limit"),
    503: NOT_READY,
}


class ErrorDetail(BaseModel):
    """What went wrong and, for bad input, which field."""

    code: str = Field(
        description="Machine-readable error code, e.g. `image_too_large`", examples=["validation_error"]
    )
    message: str = Field(description="Human-readable explanation", examples=["text: exceeds 5000 characters"])
    field: str | None = Field(None, description="The request field at fault, if any", examples=["text"])


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail = Field(description="The error: code, message and field")


def error_responses(*errors: int | ErrorDoc) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting that these errors return an :class:`ErrorBody`, one example each.

    A bare status stands for its generic error (401 unauthorized, 422 validation_error, 503 not_ready).
    """
    by_status: dict[int, list[ErrorDoc]] = defaultdict(list)
    for error in errors:
        doc = _GENERIC.get(error) if isinstance(error, int) else error
        if doc is None:
            raise ValueError(f"status {error}: document it with (status, code, message, field)")
        by_status[doc[0]].append(doc)
    return {
        status: {
            "model": ErrorBody,
            "description": HTTPStatus(status).phrase + ": " + ", ".join(f"`{doc[1]}`" for doc in docs),
            "content": {"application/json": {"examples": {doc[1]: _example(*doc) for doc in docs}}},
        }
        for status, docs in sorted(by_status.items())
    }


def _example(status: int, code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"summary": message, "value": {"error": {"code": code, "message": message, "field": field}}}


def example_response(
    example: Any, description: str = "Success", media_type: str = "application/json"
) -> dict[str, Any]:
    """A ``responses=`` entry for a success answer, with `example` as its body."""
    return {"description": description, "content": {media_type: {"example": example}}}
