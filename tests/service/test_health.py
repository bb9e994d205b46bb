"""Liveness and readiness probes."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from fusion_testkit.factories import VersionFactory
from service.runtime.model_store import ModelStore


def test_live_answers_without_a_model(empty_client: TestClient) -> None:
    response = empty_client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "live"}


def test_ready_with_a_loaded_model(client: TestClient, active_version: str) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model_version": active_version, "device": "cpu"}


def test_empty_store_is_not_ready_and_says_why(empty_client: TestClient) -> None:
    response = empty_client.get("/health/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "no model versions" in error["message"]


def test_versions_without_active_one_say_so(
    make_version: VersionFactory, make_client: Callable[..., TestClient]
) -> None:
    make_version()
    response = make_client().get("/health/ready")
    assert response.status_code == 503
    assert "none is active" in response.json()["error"]["message"]


def test_broken_active_version_keeps_app_live_but_not_ready(
    store: ModelStore, make_version: VersionFactory, make_client: Callable[..., TestClient]
) -> None:
    version = make_version()
    store.activate(version)
    (store.version_path(version) / "model.safetensors").write_bytes(b"broken")
    client = make_client()
    assert client.get("/health/live").status_code == 200
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert version in response.json()["error"]["message"]
    assert "cannot be loaded" in response.json()["error"]["message"]


def test_becomes_ready_when_a_version_is_activated_later(
    empty_client: TestClient, store: ModelStore, make_version: VersionFactory
) -> None:
    version = make_version()
    store.activate(version)
    deadline = time.monotonic() + 5
    while empty_client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert empty_client.get("/health/ready").json()["model_version"] == version
