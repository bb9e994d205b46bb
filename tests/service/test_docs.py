"""/docs, /redoc and /openapi.json: offline assets, and a manual with a summary, description and examples."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

import service
from service.schemas import examples
from service.schemas.datasets import DatasetList, DatasetPublic
from service.schemas.health import LiveStatus, ReadyStatus
from service.schemas.jobs import JobCreate, JobList, JobPublic
from service.schemas.models import ActiveModelPublic, ModelListPublic
from service.schemas.predict import BatchPredictCreate, BatchPredictionPublic, PredictionPublic

ASSET_RE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_assets_that_are_served(empty_client: TestClient, page: str) -> None:
    response = empty_client.get(page)
    assert response.status_code == 200
    # The browser may not ask another host even for what a bundle links (ReDoc's logo).
    assert "default-src 'self'" in response.headers["content-security-policy"]
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


# ---- the docs page as the manual: summaries, descriptions, examples -----------------------------------

SERVICE_SOURCE = "\n".join(path.read_text() for path in Path(service.__file__).parent.rglob("*.py"))


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _has_example(media: dict[str, Any]) -> bool:
    """A media type shows an example: its own, or one per form field (Swagger UI fills the form with them)."""
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema", {})
    if schema.get("format") == "binary":
        return True  # a PNG has no example to print
    fields = schema.get("properties", {}).values()
    return bool(fields) and all("example" in f or _binary(f) for f in fields)


def _binary(schema: dict[str, Any]) -> bool:
    """A file part (or a list of them): the user picks a file, there is nothing to show."""
    return schema.get("format") == "binary" or schema.get("items", {}).get("format") == "binary"


def test_every_operation_has_an_example_request_and_an_example_per_response(empty_client: TestClient) -> None:
    spec = empty_client.get("/openapi.json").json()
    for path, method, op in _operations(spec):
        where = f"{method.upper()} {path}"
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert _has_example(media), (where, "request", media_type)
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter.get("examples"), (where, parameter["name"])
        for status, response in op["responses"].items():
            assert response.get("description"), (where, status)
            for media_type, media in response.get("content", {}).items():
                assert _has_example(media), (where, status, media_type)


def test_error_examples_use_the_codes_the_service_raises(empty_client: TestClient) -> None:
    spec = empty_client.get("/openapi.json").json()
    seen = set()
    for _, _, op in _operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            for name, example in response["content"]["application/json"]["examples"].items():
                error = example["value"]["error"]
                assert error["code"] == name and error["message"]
                seen.add(error["code"])
                code = error["code"].replace("missing_text", "missing_{modality}")
                assert f'"{code}"' in SERVICE_SOURCE or f'f"{code}"' in SERVICE_SOURCE, code
    assert {"unauthorized", "overloaded", "job_finished", "dataset_exists", "unknown_version"} <= seen


def test_every_model_field_has_a_description(empty_client: TestClient) -> None:
    schemas = empty_client.get("/openapi.json").json()["components"]["schemas"]
    missing = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    ("model", "example"),
    [
        (PredictionPublic, examples.PREDICTION_EXPLAINED),
        (BatchPredictionPublic, examples.BATCH_PREDICTION),
        (BatchPredictCreate, examples.BATCH_JSON_REQUEST),
        (DatasetPublic, examples.DATASET),
        (DatasetList, examples.DATASET_LIST),
        (JobCreate, examples.JOB_REQUEST),
        (JobPublic, examples.JOB),
        (JobPublic, examples.JOB_QUEUED),
        (JobList, examples.JOB_LIST),
        (ModelListPublic, examples.MODEL_LIST),
        (ActiveModelPublic, examples.ACTIVE_MODEL),
        (LiveStatus, examples.LIVE),
        (ReadyStatus, examples.READY),
    ],
)
def test_each_example_validates_against_its_schema(model: type[BaseModel], example: dict[str, Any]) -> None:
    model.model_validate(example)  # raises on a wrong type or a missing field
    assert set(example) <= set(model.model_fields), "an example names a field the schema does not have"
