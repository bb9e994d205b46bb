"""A real uvicorn server on 127.0.0.1 answering a prediction over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from fusion_testkit.factories import make_jpeg
from fusion_testkit.live_server import serve
from service.app import create_app
from service.settings import Settings


@pytest.fixture
def server_url(active_version: str, make_settings: Callable[..., Settings]) -> Iterator[str]:
    with serve(create_app(make_settings())) as url:
        yield url


def test_predict_over_http(server_url: str, active_version: str) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        assert http.get("/health/ready").status_code == 200
        response = http.post(
            "/predict", files={"image": ("p.jpg", make_jpeg(), "image/jpeg")}, data={"text": "over the wire"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == active_version
    assert response.headers["x-request-id"]
