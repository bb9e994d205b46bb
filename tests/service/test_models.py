"""GET /models, /models/active and POST /models/{version}/activate, including hot swap under load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from fusion_testkit.factories import VersionFactory, make_jpeg
from service.runtime.model_store import ModelStore

ClientFactory = Callable[..., TestClient]


def _predict(client: TestClient) -> tuple[int, str | None]:
    response = client.post(
        "/predict", files=[("image", ("a.jpg", make_jpeg(), "image/jpeg")), ("text", (None, "hi"))]
    )
    return response.status_code, response.json().get("model_version")


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_list_shows_versions_metrics_and_active(
    store: ModelStore, make_version: VersionFactory, make_client: ClientFactory
) -> None:
    old, new = make_version(labels=("a", "b")), make_version(labels=("x", "y", "z"))
    store.activate(old)
    body = make_client().get("/models").json()
    assert body["active"] == old
    assert body["serving"] == old
    assert [v["version"] for v in body["versions"]] == [old, new]
    assert [v["active"] for v in body["versions"]] == [True, False]
    assert body["versions"][1]["labels"] == ["x", "y", "z"]
    assert body["versions"][0]["metrics"] == {"accuracy": 0.5}
    assert body["versions"][0]["image_encoder"] == "cnn"


def test_active_shows_serving_version_and_device(client: TestClient, active_version: str) -> None:
    body = client.get("/models/active").json()
    assert body["version"] == active_version
    assert body["serving"] == active_version
    assert body["device"] == "cpu"


def test_listing_says_which_inputs_a_version_needs(
    store: ModelStore, make_version: VersionFactory, make_client: ClientFactory
) -> None:
    strict = make_version(modality_dropout=0.0)
    image_only = make_version(text_encoder="none", modality_dropout=0.0)
    store.activate(strict)
    versions = {v["version"]: v for v in make_client().get("/models").json()["versions"]}
    assert versions[strict]["modalities"] == ["image", "text"]
    assert versions[strict]["supports_missing_modality"] is False
    assert versions[image_only]["modalities"] == ["image"]
    assert versions[image_only]["supports_missing_modality"] is True


def test_active_on_empty_store_is_404(empty_client: TestClient) -> None:
    response = empty_client.get("/models/active")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_active_version"


def test_activate_switches_predictions_without_restart(
    client: TestClient, active_version: str, make_version: VersionFactory, store: ModelStore
) -> None:
    new = make_version()
    response = client.post(f"/models/{new}/activate")
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    assert store.active_version() == new
    assert _predict(client) == (200, new)


def test_activate_older_version_is_the_rollback(
    client: TestClient, active_version: str, make_version: VersionFactory
) -> None:
    new = make_version()
    assert client.post(f"/models/{new}/activate").status_code == 200
    assert client.post(f"/models/{active_version}/activate").status_code == 200
    assert _predict(client) == (200, active_version)
    assert client.get("/models").json()["active"] == active_version


def test_activate_unknown_version_is_404(client: TestClient) -> None:
    response = client.post("/models/no-such-version/activate")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "version"


def test_activate_corrupt_checkpoint_is_409_and_keeps_serving(
    client: TestClient, active_version: str, make_version: VersionFactory, store: ModelStore
) -> None:
    broken = make_version()
    weights = store.version_path(broken) / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    response = client.post(f"/models/{broken}/activate")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_checkpoint"
    assert store.active_version() == active_version
    assert _predict(client) == (200, active_version)


def test_version_promoted_on_disk_is_picked_up_without_restart(
    client: TestClient, make_version: VersionFactory, store: ModelStore
) -> None:
    new = make_version()
    store.activate(new)  # as the training worker or another replica would
    _wait_for(lambda: client.get("/health/ready").json().get("model_version") == new)
    assert _predict(client) == (200, new)


def test_hot_swap_under_load_fails_no_request(
    client: TestClient, active_version: str, make_version: VersionFactory
) -> None:
    versions = [active_version, make_version(), make_version()]
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []

    def hammer() -> None:
        while not stop.is_set():
            results.append(_predict(client))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(hammer)
        for version in versions[1:] + versions[:1]:
            time.sleep(0.1)
            assert client.post(f"/models/{version}/activate").status_code == 200
            assert client.get("/health/ready").status_code == 200
        time.sleep(0.1)
        stop.set()
    assert len(results) > 8
    assert {status for status, _ in results} == {200}
    assert {version for _, version in results} <= set(versions)
    assert len({version for _, version in results}) > 1
    holder = client.app.state.model_holder  # type: ignore[attr-defined]
    _wait_for(lambda: holder.retired_count() == 0)  # the replaced models were released
