"""A real uvicorn serving a tiny model, with a training worker the tests run in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_client import Client
from fusion_testkit.factories import save_tiny_checkpoint
from fusion_testkit.live_server import KEY, LiveService, live_settings, serve
from service.app import create_app
from service.runtime.model_store import ModelStore


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Start a real uvicorn over a store holding one active tiny version (or none); stopped after the test."""
    stack: list[Any] = []

    def start(*, empty: bool = False, **overrides: Any) -> LiveService:
        settings = live_settings(tmp_path, **overrides)
        store = ModelStore(settings.model_dir)
        version = ""
        if not empty:
            version = save_tiny_checkpoint(store.new_version_path()).name
            store.activate(version)
        context = serve(create_app(settings))
        url = context.__enter__()
        stack.append(context)
        return LiveService(url, settings, store, version)

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def service(start_service: Callable[..., LiveService]) -> LiveService:
    """The service with API key `KEY`."""
    return start_service()


@pytest.fixture
def api(service: LiveService) -> Iterator[Client]:
    """A client of `service` holding the right key."""
    with Client(service.url, api_key=KEY, timeout=30) as client:
        yield client
