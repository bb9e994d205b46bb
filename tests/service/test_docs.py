"""/docs, /redoc and /openapi.json work offline: every asset comes from the app itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

ASSET_RE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_assets_that_are_served(empty_client: TestClient, page: str) -> None:
    response = empty_client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = ASSET_RE.findall(html)
    assert any(asset.endswith(".js") for asset in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        served = empty_client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100


def test_openapi_documents_every_route_with_summary_and_description(empty_client: TestClient) -> None:
    spec = empty_client.get("/openapi.json").json()
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    paths = {path for path, _, _ in operations}
    assert {"/predict", "/predict/batch", "/health/live", "/health/ready", "/models", "/metrics"} <= paths
    for path, method, op in operations:
        assert op.get("summary"), (path, method)
        assert op.get("description"), (path, method)


def test_predict_documents_its_multipart_fields(empty_client: TestClient) -> None:
    spec = empty_client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["properties"]) == {"image", "text"}
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    assert set(batch) == {"multipart/form-data", "application/json"}
    assert "ErrorBody" in spec["components"]["schemas"]


def test_every_422_is_documented_with_the_error_body(empty_client: TestClient) -> None:
    raw = empty_client.get("/openapi.json")
    assert "HTTPValidationError" not in raw.text
    documented = [
        op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        for item in raw.json()["paths"].values()
        for op in item.values()
        if "422" in op["responses"]
    ]
    assert documented and set(documented) == {"#/components/schemas/ErrorBody"}
