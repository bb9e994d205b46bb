"""Log output as text or JSON, with the request fields on the access lines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.logging_setup import JsonFormatter


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
