"""Every error has the JSON shape {"error": {"code", "message", "field"}}; no traceback ever leaks."""

from __future__ import annotations

import errno

from fastapi.testclient import TestClient


def _error(response_json: dict[str, object]) -> dict[str, object]:
    assert set(response_json) == {"error"}
    error = response_json["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "field"}
    return error


def test_unknown_route_is_json_404(empty_client: TestClient) -> None:
    response = empty_client.get("/nothing/here")
    assert response.status_code == 404
    assert _error(response.json())["code"] == "not_found"


def test_wrong_method_is_json_405(empty_client: TestClient) -> None:
    response = empty_client.delete("/health/live")
    assert response.status_code == 405
    assert _error(response.json())["code"] == "method_not_allowed"


def test_query_validation_error_names_the_field(client: TestClient) -> None:
    response = client.post("/predict?explain=perhaps", files=[("text", (None, "hi"))])
    assert response.status_code == 422
    error = _error(response.json())
    assert error["field"] == "explain"
    assert error["code"] == "validation_error"


def test_unexpected_exception_is_a_bare_500(empty_client: TestClient) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    empty_client.app.add_api_route("/explode", explode)  # type: ignore[attr-defined]
    response = empty_client.get("/explode", headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 500
    assert _error(response.json())["code"] == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] == "trace-me-1"


def test_a_write_that_runs_out_of_disk_space_is_507_without_internals(empty_client: TestClient) -> None:
    def fill_the_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/secret/upload.zip")

    empty_client.app.add_api_route("/fill", fill_the_disk)  # type: ignore[attr-defined]
    response = empty_client.get("/fill", headers={"X-Request-ID": "trace-me-2"})
    assert response.status_code == 507
    error = _error(response.json())
    assert error["code"] == "insufficient_storage" and "no space left on the device" in str(error["message"])
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] == "trace-me-2"
