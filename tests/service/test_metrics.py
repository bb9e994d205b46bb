"""GET /metrics: Prometheus text with request, batch, queue and model metrics, one registry per app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fusion_testkit.factories import make_jpeg


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _predict(client: TestClient) -> None:
    files: list[Any] = [("image", ("a.jpg", make_jpeg(), "image/jpeg")), ("text", (None, "hi"))]
    assert client.post("/predict", files=files).status_code == 200


def test_requests_are_counted_per_route_template_and_status(client: TestClient, active_version: str) -> None:
    _predict(client)
    _predict(client)
    client.get("/models/nope/activate")  # 405 on a templated route
    client.get("/no/such/path")
    samples = _samples(client)
    assert (
        samples[("http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 2
    )
    key = (
        "http_requests_total",
        (("method", "GET"), ("route", "/models/{version}/activate"), ("status", "405")),
    )
    assert samples[key] == 1
    assert (
        samples[("http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))]
        == 1
    )
    count = ("http_request_duration_seconds_count", (("method", "POST"), ("route", "/predict")))
    assert samples[count] == 2


def test_batches_queue_and_model_are_reported(client: TestClient, active_version: str) -> None:
    _predict(client)
    samples = _samples(client)
    assert samples[("inference_batch_size_count", ())] >= 1
    assert samples[("inference_batch_size_sum", ())] >= 1
    assert samples[("inference_queue_depth", ())] == 0
    assert samples[("model_ready", ())] == 1
    info = ("model_info", (("device", "cpu"), ("runtime", "torch"), ("version", active_version)))
    assert samples[info] == 1


def test_empty_store_reports_not_ready(empty_client: TestClient) -> None:
    samples = _samples(empty_client)
    assert samples[("model_ready", ())] == 0
    assert not [name for name, _ in samples if name == "model_info"]


def test_each_app_has_its_own_registry(make_client: Callable[..., TestClient], active_version: str) -> None:
    first, second = make_client(), make_client()
    _predict(first)
    key = ("http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))
    assert _samples(first)[key] == 1
    assert key not in _samples(second)


def test_job_counts_by_status_are_read_at_scrape_time(empty_client: TestClient) -> None:
    job_store = empty_client.app.state.job_store  # type: ignore[attr-defined]
    job_store.create("demo")
    job_store.create("demo")
    samples = _samples(empty_client)
    assert samples[("training_jobs", (("status", "queued"),))] == 2
    assert samples[("training_jobs", (("status", "running"),))] == 0
