"""503 with Retry-After: the client waits as told and retries a bounded number of times (real uvicorn)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fusion_client import AsyncClient, Client, FusionAPIError
from fusion_testkit.factories import make_jpeg
from fusion_testkit.live_server import serve

ANSWER = {"label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}, "model_version": "v1",
          "modalities_used": ["image", "text"]}  # fmt: skip


class Overloaded:
    """A stub whose /predict answers 503 `overloaded` with `Retry-After` to its first `busy` calls."""

    def __init__(self, busy: int, retry_after: str) -> None:
        self.busy = busy
        self.retry_after = retry_after
        self.images: list[bytes] = []  # the image each call carried
        self.times: list[float] = []
        self.app = Starlette(routes=[Route("/predict", self.predict, methods=["POST"])])

    async def predict(self, request: Request) -> JSONResponse:
        form = await request.form()
        image = form["image"]
        assert not isinstance(image, str)
        self.images.append(await image.read())
        self.times.append(time.monotonic())
        if len(self.images) <= self.busy:
            error = {"code": "overloaded", "message": "the queue is full", "field": None}
            return JSONResponse({"error": error}, 503, headers={"Retry-After": self.retry_after})
        return JSONResponse(ANSWER)


@pytest.fixture
def overloaded(request: pytest.FixtureRequest) -> Iterator[tuple[Overloaded, str]]:
    busy, retry_after = request.param
    stub = Overloaded(busy, retry_after)
    with serve(stub.app) as url:
        yield stub, url


@pytest.mark.parametrize("overloaded", [(2, "0.2")], indirect=True)
def test_503_is_retried_after_the_wait_the_server_asks_for(overloaded: tuple[Overloaded, str]) -> None:
    stub, url = overloaded
    jpeg = make_jpeg()
    with Client(url, max_retries=3) as client:
        answer = client.predict(jpeg, "hello")
    assert answer.label == "positive"
    assert stub.images == [jpeg] * 3  # the whole body again on every try
    gaps = [later - earlier for earlier, later in zip(stub.times, stub.times[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps


@pytest.mark.parametrize("overloaded", [(10, "0")], indirect=True)
def test_retries_are_bounded_then_the_503_is_raised(overloaded: tuple[Overloaded, str]) -> None:
    stub, url = overloaded
    with Client(url, max_retries=2) as client, pytest.raises(FusionAPIError) as error:
        client.predict(make_jpeg())
    assert (error.value.status, error.value.code, error.value.retry_after) == (503, "overloaded", 0.0)
    assert len(stub.images) == 3  # the first try and two retries


@pytest.mark.parametrize("overloaded", [(1, "120")], indirect=True)
def test_a_wait_longer_than_allowed_is_not_slept_through(overloaded: tuple[Overloaded, str]) -> None:
    stub, url = overloaded
    with Client(url, max_retry_wait_s=5) as client, pytest.raises(FusionAPIError) as error:
        client.predict(make_jpeg())
    assert error.value.retry_after == 120.0 and len(stub.images) == 1


@pytest.mark.parametrize("overloaded", [(1, "0")], indirect=True)
def test_the_async_client_retries_too(overloaded: tuple[Overloaded, str]) -> None:
    stub, url = overloaded

    async def call() -> str:
        async with AsyncClient(url) as client:
            return (await client.predict(make_jpeg(), "hi")).label

    assert asyncio.run(call()) == "positive" and len(stub.images) == 2
