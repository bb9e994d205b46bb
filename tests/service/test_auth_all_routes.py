"""Every mutating route in the app's route table refuses a missing or wrong API key with 401, and the key
never shows up in a response body or a log line.

The routes come from `app.routes`, so a route added later is covered (or fails here) without anyone
remembering to list it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusion_testkit.factories import make_jpeg
from tests.service.route_table import routes_with_methods, unstarted_app

KEY = "k3y-Zq8vN1xR5tW0pL7m"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# Predict changes nothing; whether it needs the key is the require_key_for_predict setting.
PREDICT_ROUTES = {("POST", "/predict"), ("POST", "/predict/batch")}
BAD_HEADERS = {
    "missing": {},
    "wrong-key": {"Authorization": "Bearer not-the-key"},
    "key-with-extra-char": {"Authorization": f"Bearer {KEY}x"},
    "key-missing-last-char": {"Authorization": f"Bearer {KEY[:-1]}"},
    "basic-scheme": {"Authorization": f"Basic {KEY}"},
    "empty-bearer": {"Authorization": "Bearer "},
}
ClientFactory = Callable[..., TestClient]


def concrete(path: str) -> str:
    """The template with every `{parameter}` filled in (names that exist nowhere: auth comes first)."""
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


ROUTES = routes_with_methods(unstarted_app(), MUTATING)


def test_the_route_table_has_the_mutating_routes_of_every_resource() -> None:
    prefixes = {path.split("/")[1] for _method, path in ROUTES}
    assert prefixes == {"predict", "models", "datasets", "jobs"}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_mutating_route_refuses_a_missing_or_wrong_key_with_401(
    make_client: ClientFactory, active_version: str, method: str, path: str
) -> None:
    client = make_client(api_key=KEY, require_key_for_predict=True)

    for name, headers in BAD_HEADERS.items():
        response = client.request(method, concrete(path), headers=headers)

        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert response.json() == {"error": {**error, "code": "unauthorized", "field": "Authorization"}}
        sent = headers.get("Authorization", "").partition(" ")[2]
        assert KEY not in response.text and (not sent or sent not in response.text), name


def test_only_predict_is_open_without_the_predict_setting(
    make_client: ClientFactory, active_version: str
) -> None:
    client = make_client(api_key=KEY)
    files: list[Any] = [("image", ("a.jpg", make_jpeg(), "image/jpeg")), ("text", (None, "hi"))]

    refused = {(m, p) for m, p in ROUTES if client.request(m, concrete(p)).status_code == 401}

    assert set(ROUTES) - refused == PREDICT_ROUTES
    assert client.post("/predict", files=files).status_code == 200


def test_the_key_never_appears_in_responses_or_logs(
    make_client: ClientFactory,
    active_version: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = make_client(api_key=KEY, require_key_for_predict=True, log_level="debug", log_format="json")
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for method, path in ROUTES:
            for headers in [*BAD_HEADERS.values(), {"Authorization": f"Bearer {KEY}"}]:
                bodies.append(client.request(method, concrete(path), headers=headers).text)
        for path in ("/openapi.json", "/metrics", "/models", "/jobs", "/datasets", "/health/ready"):
            bodies.append(client.get(path, headers={"Authorization": f"Bearer {KEY}"}).text)
    printed = capsys.readouterr()

    assert len(caplog.records) > len(bodies)  # an access line per request at least
    assert not [body for body in bodies if KEY in body]
    assert not [r.getMessage() for r in caplog.records if KEY in r.getMessage() or KEY in str(r.__dict__)]
    assert printed.out.count('"logger": "service.access"') >= len(bodies)
    assert KEY not in printed.out and KEY not in printed.err
