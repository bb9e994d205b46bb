"""Shapes shared by every router: the error body and the ``responses=`` entries that document it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """What went wrong and, for bad input, which field."""

    code: str = Field(
        description="Machine-readable error code, e.g. `image_too_large`", examples=["validation_error"]
    )
    message: str = Field(description="Human-readable explanation", examples=["text: exceeds 5000 characters"])
    field: str | None = Field(None, description="The request field at fault, if any", examples=["text"])


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting that these statuses return an :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}
