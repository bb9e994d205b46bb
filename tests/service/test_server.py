"""A real uvicorn server on 127.0.0.1 answering a prediction over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from fusion_testkit.factories import make_jpeg
from fusion_testkit.processes import free_port
from service.app import create_app
from service.settings import Settings


@pytest.fixture
def server_url(active_version: str, make_settings: Callable[..., Settings]) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(make_settings()), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert thread.is_alive(), "server thread died"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_predict_over_http(server_url: str, active_version: str) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        assert http.get("/health/ready").status_code == 200
        response = http.post(
            "/predict", files={"image": ("p.jpg", make_jpeg(), "image/jpeg")}, data={"text": "over the wire"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == active_version
    assert response.headers["x-request-id"]
