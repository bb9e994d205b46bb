"""Fixtures of the worker tests: a worker on a test data directory holding the demo dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from service.settings import Settings
from service.worker.loop import Worker


@pytest.fixture
def worker(make_settings: Callable[..., Settings], demo_dataset: str) -> Iterator[Worker]:
    """A worker (not running) over the test stores."""
    worker = Worker(make_settings(device="cpu"))
    yield worker
    worker.close()
