"""The request middleware: request ids in and out, and one access-log line per request."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient


def test_request_id_is_generated_and_returned(empty_client: TestClient) -> None:
    first = empty_client.get("/health/live").headers["x-request-id"]
    second = empty_client.get("/health/live").headers["x-request-id"]
    assert first and second and first != second


def test_valid_incoming_request_id_is_kept(empty_client: TestClient) -> None:
    response = empty_client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_unsafe_incoming_request_id_is_replaced(empty_client: TestClient) -> None:
    response = empty_client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


def test_one_access_line_per_request(empty_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        empty_client.get("/health/ready", headers={"X-Request-ID": "req-42"})
    (record,) = [r for r in caplog.records if r.name == "service.access"]
    assert record.request_id == "req-42"  # type: ignore[attr-defined]
    assert (record.method, record.path, record.status) == ("GET", "/health/ready", 503)  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert "req-42" in record.getMessage() and "503" in record.getMessage()
