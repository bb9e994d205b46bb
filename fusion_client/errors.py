"""The one exception type the client raises for an error answer of the API."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx


class FusionAPIError(Exception):
    """An error answer of the service: HTTP `status`, machine-readable `code`, `message`, `field` at fault.

    `retry_after` is the server's `Retry-After` in seconds (on 503), when it sent one.
    """

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> FusionAPIError:
        """Read the service's `{"error": {code, message, field}}` body (or make one up for a foreign body)."""
        detail: Any = None
        with contextlib.suppress(ValueError, AttributeError):
            detail = response.json().get("error")
        retry_after = retry_after_seconds(response)
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            return cls(
                response.status_code,
                detail["code"],
                str(detail.get("message", "")),
                detail.get("field"),
                retry_after,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(response.status_code, f"http_{response.status_code}", text, None, retry_after)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (a number or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
