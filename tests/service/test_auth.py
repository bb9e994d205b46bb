"""API-key auth on mutating routes and, when configured, on predict."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from fusion_testkit.factories import make_jpeg
from service.settings import Settings

KEY = "s3cret-key-value"
ClientFactory = Callable[..., TestClient]


def _predict(client: TestClient, headers: dict[str, str] | None = None) -> int:
    files: list[Any] = [("image", ("a.jpg", make_jpeg(), "image/jpeg")), ("text", (None, "hi"))]
    return client.post("/predict", files=files, headers=headers or {}).status_code


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_activate_without_the_right_key_is_401(
    make_client: ClientFactory, active_version: str, headers: dict[str, str]
) -> None:
    response = make_client(api_key=KEY).post(f"/models/{active_version}/activate", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert KEY not in response.text


def test_activate_with_the_key_passes(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(api_key=KEY)
    response = client.post(f"/models/{active_version}/activate", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200


def test_no_key_configured_means_no_auth(client: TestClient, active_version: str) -> None:
    assert client.post(f"/models/{active_version}/activate").status_code == 200


def test_predict_is_open_by_default_even_with_a_key(make_client: ClientFactory, active_version: str) -> None:
    assert _predict(make_client(api_key=KEY)) == 200


def test_predict_needs_the_key_when_configured(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(api_key=KEY, require_key_for_predict=True)
    assert _predict(client) == 401
    assert _predict(client, {"Authorization": f"Bearer {KEY}"}) == 200


def test_key_is_never_logged(
    make_client: ClientFactory, active_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(api_key=KEY)
    with caplog.at_level(logging.DEBUG):
        client.post(f"/models/{active_version}/activate", headers={"Authorization": f"Bearer {KEY}"})
        client.post(f"/models/{active_version}/activate", headers={"Authorization": f"Bearer {KEY}x"})
    assert caplog.records
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_key_is_hidden_in_settings_repr() -> None:
    assert KEY not in repr(Settings(_env_file=None, api_key=SecretStr(KEY)))  # type: ignore[call-arg]


def test_predict_key_without_a_key_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        Settings(_env_file=None, require_key_for_predict=True)  # type: ignore[call-arg]
