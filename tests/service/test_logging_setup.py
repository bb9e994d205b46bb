"""Request ids and the one-line-per-request access log, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.logging_setup import JsonFormatter


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


def test_json_format_emits_one_object_per_line(
    make_client: Callable[..., TestClient], capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(log_format="json")
    capsys.readouterr()
    client.get("/health/live", headers={"X-Request-ID": "json-1"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "service.access"]
    assert access and access[0]["request_id"] == "json-1"
    assert access[0]["status"] == 200 and access[0]["path"] == "/health/live"


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "failed here"
    assert "ValueError: boom" in payload["exc_info"]
