"""A real uvicorn in a thread on 127.0.0.1, and a live service with a worker, for the HTTP tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from fusion_testkit.processes import HOST, free_port
from service.runtime.model_store import ModelStore
from service.settings import Settings
from service.worker.loop import Worker


@contextmanager
def serve(app: Any, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run `app` (lifespan included) under uvicorn until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert thread.is_alive(), "server thread died"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


KEY = "client-key"


@dataclass
class LiveService:
    """A running service: its URL, settings and model store, and a way to run its worker."""

    url: str
    settings: Settings
    store: ModelStore
    first_version: str  # "" for an empty store

    def run_worker_once(self) -> threading.Thread:
        """Start a thread that runs one queued job through a real worker, then closes it."""

        def run() -> None:
            worker = Worker(self.settings)
            try:
                worker.run_once()
            finally:
                worker.close()

        thread = threading.Thread(target=run, name="test-worker")
        thread.start()
        return thread


def live_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test service under `tmp_path`: no worker process, one thread, fast model polling."""
    values: dict[str, Any] = {
        "model_dir": tmp_path / "models",
        "data_dir": tmp_path / "data",
        "start_worker": False,
        "model_poll_interval_s": 0.05,
        "decode_threads": 1,
        "torch_threads": 1,
        "device": "cpu",
        "api_key": KEY,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
