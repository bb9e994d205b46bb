"""Fixtures that build the API around tiny checkpoints in a temporary model store."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusion_testkit.factories import SettingsFactory, VersionFactory, save_tiny_checkpoint
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.pg_cluster import PgServer, PostgresUnavailable, throwaway_server
from model.demo_data import write_demo_dataset
from service.app import create_app
from service.runtime.model_store import ModelStore
from service.settings import Settings


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings for a test app: stores under ``tmp_path``, no worker, no .env file, fast polling."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model_dir": tmp_path / "models",
            "data_dir": tmp_path / "data",
            "start_worker": False,
            "model_poll_interval_s": 0.05,
            "decode_threads": 1,
            "torch_threads": 1,
            # Eager torch unless a test asks for ONNX: exporting each test's version would add seconds.
            "runtime": "torch",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """The model store the test apps use."""
    return ModelStore(tmp_path / "models")


@pytest.fixture
def make_version(store: ModelStore) -> VersionFactory:
    """Save a tiny untrained checkpoint as a new version in the store; returns its name."""

    def make(labels: tuple[str, ...] = ("negative", "positive"), **overrides: Any) -> str:
        return save_tiny_checkpoint(store.new_version_path(), labels, **overrides).name

    return make


@pytest.fixture
def active_version(store: ModelStore, make_version: VersionFactory) -> str:
    """A tiny version, activated."""
    version = make_version()
    store.activate(version)
    return version


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[Callable[..., TestClient]]:
    """Start (lifespan included) a TestClient for an app built with ``make_settings(**overrides)``."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(active_version: str, make_client: Callable[..., TestClient]) -> TestClient:
    """A started app serving the tiny ``active_version``."""
    return make_client()


@pytest.fixture
def empty_client(make_client: Callable[..., TestClient]) -> TestClient:
    """A started app over an empty model store."""
    return make_client()


# ---- training side: datasets and jobs ------------------------------------------------------------------


@pytest.fixture
def tiny_job_params() -> dict[str, Any]:
    """Job params that train in a few seconds on two cores: cnn + bow at 32 px, three epochs."""
    return {**TINY_JOB_PARAMS, "epochs": 3}


@pytest.fixture
def demo_dataset(tmp_path: Path) -> str:
    """The demo dataset placed by hand in the test data directory as ``demo`` (splits train and dev)."""
    write_demo_dataset(tmp_path / "data" / "datasets" / "demo", n_per_class=16)
    return "demo"


@pytest.fixture
def single_cpu() -> Iterator[None]:
    """Pin the test, and the worker processes it starts, to one CPU.

    A worker process sizes torch's thread pool to the CPUs it may use (the tests' own one-thread setting
    does not reach it); on a machine shared with other work those threads spin-wait each other and a tiny
    job takes 20x longer than on one thread.
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


# ---- job database on PostgreSQL ------------------------------------------------------------------------


@contextlib.contextmanager
def _postgres_or_skip(parent: Path | None = None) -> Iterator[PgServer]:
    """A throwaway PostgreSQL server (its files under `parent`, else the system's temporary directory);
    skips the test when psycopg or the server binaries are missing."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'fusion-service[postgres]')")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_server(parent=parent))
        except PostgresUnavailable as exc:
            pytest.skip(f"no PostgreSQL server for the tests: {exc}")
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster shared by the session; skips when none can be started."""
    with _postgres_or_skip() as server:
        yield server.url


@pytest.fixture
def postgres_server() -> Iterator[PgServer]:
    """A PostgreSQL server of the test's own, to stop and start; skips when none can be started."""
    with _postgres_or_skip() as server:
        yield server


@pytest.fixture
def postgres_server_under() -> Callable[[Path], contextlib.AbstractContextManager[PgServer]]:
    """Starts a PostgreSQL server of the test's own with its files under a given directory (a small disk
    to fill, say); skips when none can be started."""
    return _postgres_or_skip


@pytest.fixture
def postgres_job_db_url(postgres_url: str) -> str:
    """A FUSION_JOB_DB_URL whose tables land in a fresh, empty schema of the session's cluster."""
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres_url}?options=-csearch_path%3D{schema}"
