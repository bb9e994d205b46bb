"""bench.loadgen against a real uvicorn: its own request bytes parse as multipart, statuses are counted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.loadgen import check_loopback, encode_requests, run_load
from fusion_testkit.factories import make_jpeg
from fusion_testkit.processes import free_port


async def _predict(request: Request) -> JSONResponse:
    """200 for a well-formed upload, 503 when the caption says so; closes the connection when asked to."""
    form = await request.form()
    image = form["image"]
    assert not isinstance(image, str)
    data = await image.read()
    text = form["text"]
    headers = {"connection": "close"} if text == "close" else None
    status = 503 if text == "busy" else 200
    ok = data.startswith(b"\xff\xd8") and image.content_type == "image/jpeg"
    return JSONResponse({"bytes": len(data)}, status_code=status if ok else 400, headers=headers)


@pytest.fixture
def url() -> Iterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/predict", _predict, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/predict"
    server.should_exit = True
    thread.join(10)


def _samples(tmp_path: Path, *texts: str) -> list[dict[str, str]]:
    image = tmp_path / "photo.jpg"
    image.write_bytes(make_jpeg())
    return [{"image": str(image), "text": text} for text in texts]


def test_every_request_parses_and_counts_as_ok(url: str, tmp_path: Path) -> None:
    requests = encode_requests(_samples(tmp_path, "a caption", "ünïcode caption"), url)
    result = asyncio.run(run_load(url, requests, concurrency=3, total_requests=20))
    assert (result.ok, result.errors) == (20, 0)
    assert result.latencies_ms == sorted(result.latencies_ms) and result.p50_ms > 0


def test_non_200_answers_are_errors_by_status(url: str, tmp_path: Path) -> None:
    requests = encode_requests(_samples(tmp_path, "fine", "busy"), url)
    result = asyncio.run(run_load(url, requests, concurrency=1, total_requests=10))
    assert (result.ok, result.errors, result.error_kinds) == (5, 5, {"http_503": 5})


def test_a_closed_connection_is_reopened(url: str, tmp_path: Path) -> None:
    requests = encode_requests(_samples(tmp_path, "close"), url)
    result = asyncio.run(run_load(url, requests, concurrency=2, total_requests=8))
    assert (result.ok, result.errors) == (8, 0)


def test_a_refused_connection_is_an_error_not_a_crash(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/predict"  # nothing listens there
    requests = encode_requests(_samples(tmp_path, "x"), dead)
    result = asyncio.run(run_load(dead, requests, concurrency=1, total_requests=3))
    assert (result.ok, result.errors, result.error_kinds) == (0, 3, {"ConnectionRefusedError": 3})


def test_only_loopback_targets_are_allowed() -> None:
    check_loopback("http://localhost:8000/predict")
    with pytest.raises(ValueError, match="not a loopback address"):
        check_loopback("http://10.0.0.1:8000/predict")
    with pytest.raises(ValueError, match="not an http:// URL"):
        check_loopback("https://127.0.0.1:8000/predict")
