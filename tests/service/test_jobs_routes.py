"""/jobs routes: queue, run (worker in-process), follow, report, cancel, promotion, validation, auth."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fusion_testkit.factories import build_tiny_model, make_jpeg
from fusion_testkit.zips import demo_zip
from model.checkpoint import save_checkpoint
from model.config import IMAGE_ENCODERS, METRICS, TEXT_ENCODERS
from model.demo_data import write_demo_dataset
from service.runtime.job_record import Job
from service.runtime.model_store import ModelStore
from service.worker.loop import Worker

KEY = "jobs-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
Params = dict[str, Any]


@pytest.fixture
def client(active_version: str, make_client: Callable[..., TestClient]) -> TestClient:
    """An app with an API key, serving the tiny active version."""
    return make_client(api_key=KEY, device="cpu")


@pytest.fixture
def demo(client: TestClient, tmp_path: Path) -> str:
    """The demo dataset, uploaded as a zip."""
    response = client.post(
        "/datasets",
        files=[("name", (None, b"demo")), ("file", ("demo.zip", demo_zip(tmp_path, 16), "application/zip"))],
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    return "demo"


def _run_worker_once(client: TestClient) -> Job | None:
    """One job through a worker of the app's settings, closed afterwards."""
    worker = Worker(client.app.state.settings)  # type: ignore[attr-defined]
    try:
        return worker.run_once()
    finally:
        worker.close()


def _create(client: TestClient, **body: Any) -> Any:
    return client.post("/jobs", json=body, headers=AUTH)


def _queue(client: TestClient, params: Params, **body: Any) -> dict[str, Any]:
    body = {"dataset": "demo", "validation": "demo:dev", "params": params, **body}
    response = _create(client, **body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _status(client: TestClient, job_id: str) -> str:
    status: str = client.get(f"/jobs/{job_id}").json()["status"]
    return status


def _predict(client: TestClient) -> Any:
    image = ("a.jpg", make_jpeg(), "image/jpeg")
    return client.post("/predict", files={"image": image}, data={"text": "ice"})


def _serving(client: TestClient) -> str | None:
    answer = _predict(client)
    version: str | None = answer.json().get("model_version") if answer.status_code == 200 else None
    return version


def test_job_lifecycle_ends_with_a_promoted_version_served_without_restart(
    client: TestClient, demo: str, tiny_job_params: Params, active_version: str
) -> None:
    assert _serving(client) == active_version
    response = _create(client, dataset=demo, validation="demo:dev", params=tiny_job_params, promote="always")
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert (job["status"], job["queue_position"], job["params"]["epochs"]) == ("queued", 1, 3)

    _run_worker_once(client)

    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["promoted"] and done["error"] is None
    assert [entry["epoch"] for entry in done["history"]] == [1, 2, 3]
    assert done["progress"]["fraction"] == 1.0 and done["finished_at"] >= done["started_at"]
    _wait_for(lambda: _serving(client) == done["model_version"])
    assert set(_predict(client).json()["probabilities"]) == {"negative", "positive"}
    assert client.get("/models/active").json()["version"] == done["model_version"]


def test_if_better_refuses_a_worse_model(
    client: TestClient, demo: str, tiny_job_params: Params, store: ModelStore
) -> None:
    perfect = save_checkpoint(
        store.new_version_path(),
        build_tiny_model(labels=("negative", "positive")),
        metrics={"fusion": {"accuracy": 1.0, "macro_f1": 1.0}},
        dataset_fingerprint="perfect",
    ).name
    assert client.post(f"/models/{perfect}/activate", headers=AUTH).status_code == 200
    job = _queue(client, tiny_job_params, promote="if_better")

    _run_worker_once(client)

    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and not done["promoted"]
    assert "does not beat" in done["metrics"]["promotion"]["reason"]
    assert client.get("/models/active").json()["version"] == perfect
    assert done["model_version"] in {v["version"] for v in client.get("/models").json()["versions"]}


def test_cancel_of_a_queued_job_is_immediate(client: TestClient, demo: str, tiny_job_params: Params) -> None:
    job = _queue(client, tiny_job_params)

    response = client.post(f"/jobs/{job['id']}/cancel", headers=AUTH)

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert _run_worker_once(client) is None
    again = client.post(f"/jobs/{job['id']}/cancel", headers=AUTH)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_cancel_of_a_running_job_discards_its_model(
    client: TestClient, demo: str, tiny_job_params: Params, active_version: str
) -> None:
    job = _queue(client, {**tiny_job_params, "epochs": 500}, promote="always")
    worker = threading.Thread(target=_run_worker_once, args=(client,))
    worker.start()
    _wait_for(lambda: _status(client, job["id"]) == "running")

    response = client.post(f"/jobs/{job['id']}/cancel", headers=AUTH)
    worker.join(60)

    assert response.status_code == 200 and response.json()["cancel_requested"]
    final = client.get(f"/jobs/{job['id']}").json()
    assert final["status"] == "cancelled" and final["model_version"] is None
    assert [v["version"] for v in client.get("/models").json()["versions"]] == [active_version]


def _events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_events_stream_progress_until_the_job_ends(
    client: TestClient, demo: str, tiny_job_params: Params
) -> None:
    job = _queue(client, {**tiny_job_params, "epochs": 30}, promote="never")
    worker = threading.Thread(target=_run_worker_once, args=(client,))
    worker.start()
    _wait_for(lambda: _status(client, job["id"]) == "running")

    response = client.get(f"/jobs/{job['id']}/events")
    worker.join(60)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[0][0] == "progress" and events[0][1]["status"] == "running"
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
    assert [name for name, _ in events[:-1]] == ["progress"] * (len(events) - 1)


def test_report_is_a_png_once_the_job_has_epochs(
    client: TestClient, demo: str, tiny_job_params: Params
) -> None:
    job = _queue(client, tiny_job_params, promote="never")
    assert client.get(f"/jobs/{job['id']}/report.png").status_code == 409

    _run_worker_once(client)
    response = client.get(f"/jobs/{job['id']}/report.png")

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.width > 600


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"epochs": 0}}, "params.epochs"),
        ({"params": {"epochs": 501}}, "params.epochs"),
        ({"params": {"batch_size": 0}}, "params.batch_size"),
        ({"params": {"nproc": 4, "batch_size": 4}}, "params.batch_size"),  # fewer than 2 rows per process
        ({"params": {"lr": 2.0}}, "params.lr"),
        ({"params": {"image_encoder": "vgg"}}, "params.image_encoder"),
        ({"params": {"finetune_layers": 7}}, "params.finetune_layers"),  # minilm has 6
        ({"params": {"label_smoothing": -0.1}}, "params.label_smoothing"),
        ({"params": {"keep": "first"}}, "params.keep"),
        ({"params": {"text_image_tags": 11}}, "params.text_image_tags"),
        ({"params": {"text_image_tags": 3, "image_encoder": "cnn"}}, "params.text_image_tags"),
        # The tags come from the frozen image features.
        ({"params": {"text_image_tags": 3, "finetune": "all"}}, "params.text_image_tags"),
        ({"params": {"knn_weight": 1.5}}, "params.knn_weight"),
        ({"params": {"knn_weight": 0.75, "members": 2}}, "params.knn_weight"),
        ({"params": {"unknown_knob": 1}}, "params.unknown_knob"),
        ({"validation": 0.9}, "validation"),
        ({"promote": "sometimes"}, "promote"),
        ({"dataset": "no-such-dataset"}, "dataset"),
        ({"dataset": "demo:nosplit"}, "dataset"),
        ({"dataset": "../etc"}, "dataset"),
        ({"validation": "no-such-dataset"}, "validation"),
        ({"test": "no-such-dataset"}, "test"),
        ({"test": "demo:nosplit"}, "test"),
        ({"test": 0.2}, "test"),
        ({"cv": {"folds": 1}}, "cv.folds"),
        ({"cv": {"folds": 21}}, "cv.folds"),
        ({"cv": {"folds": "five"}}, "cv.folds"),
        ({"cv": {}}, "cv.folds"),
        ({"cv": {"folds": 3, "shuffle": True}}, "cv.shuffle"),
        ({"cv": {"folds": 3}, "validation": "demo:dev"}, "validation"),
        ({"cv": {"folds": 3}, "params": {"nproc": 2}}, "params.nproc"),
        # No coercion: the schema says boolean / integer, so 0 and "10" are type errors (found by the fuzzer).
        ({"skip_invalid": 0}, "skip_invalid"),
        ({"params": {"augment": 1}}, "params.augment"),
        ({"params": {"epochs": "10"}}, "params.epochs"),
        ({"cv": {"folds": "5"}}, "cv.folds"),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    client: TestClient, demo: str, body: dict[str, Any], field: str
) -> None:
    response = _create(client, **{"dataset": "demo", **body})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_a_job_records_the_image_tags_its_recipe_will_use(
    client: TestClient, demo: str, tiny_job_params: Params
) -> None:
    # The default (3) where the recipe can tag, 0 where it cannot (cnn, or a trained image encoder).
    default = _queue(client, {"epochs": 1})
    cnn = _queue(client, tiny_job_params)
    last_blocks = _queue(client, {"finetune": "last"})

    assert default["params"]["text_image_tags"] == 3
    assert cnn["params"]["text_image_tags"] == 0
    assert last_blocks["params"]["text_image_tags"] == 0


def test_more_folds_than_samples_are_refused(client: TestClient, demo: str, tmp_path: Path) -> None:
    write_demo_dataset(tmp_path / "data" / "datasets" / "few", n_per_class=4)

    response = _create(client, dataset="few", cv={"folds": 9})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "cv.folds" and "8" in response.json()["error"]["message"]


def test_a_cv_job_reports_every_fold_and_plots_them(
    client: TestClient, demo: str, tiny_job_params: Params
) -> None:
    body = {"dataset": "demo", "cv": {"folds": 3}, "test": "demo:dev", "params": tiny_job_params}
    created = _create(client, **body)
    assert created.status_code == 202, created.text
    assert (created.json()["cv"], created.json()["test"]) == ({"folds": 3}, "demo:dev")

    _run_worker_once(client)
    job = client.get(f"/jobs/{created.json()['id']}").json()

    assert job["status"] == "succeeded", job["error"]
    cv = job["metrics"]["cv"]
    assert len(cv["folds"]) == 3 and cv["k"] == 3
    for summary in (cv["mean"]["fusion"], cv["std"]["fusion"]):
        assert set(summary) == {"accuracy", "macro_f1", "weighted_f1", "per_class"}
        assert set(summary["per_class"]["negative"]) == {"precision", "recall", "f1"}
    assert job["metrics"]["fusion"]["accuracy"] == cv["mean"]["fusion"]["accuracy"]
    assert set(job["metrics"]["test"]) == {"fusion", "image_only", "text_only"}
    response = client.get(f"/jobs/{job['id']}/report.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.width >= 5 * 500  # loss, metrics, confusion, folds, per class


@pytest.mark.parametrize("field", ["validation", "test"])
def test_a_split_with_unknown_labels_is_refused(
    client: TestClient, demo: str, tmp_path: Path, tiny_job_params: Params, field: str
) -> None:
    folder = tmp_path / "data" / "datasets" / "other"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            (folder / label / f"{i}.jpg").write_bytes(make_jpeg((60 * i, 90, 200 if label == "cat" else 0)))
            (folder / label / f"{i}.txt").write_text(f"{label} {i}")

    response = _create(client, dataset="demo", params=tiny_job_params, **{field: "other"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == field and "'cat'" in error["message"]


@pytest.fixture
def linked_with_duplicates(tmp_path: Path) -> str:
    """The demo dataset placed as a link `mvsa` (like a mounted MVSA folder), one duplicate row per split."""
    source = write_demo_dataset(tmp_path / "mounted", n_per_class=16)
    for split in ("train", "dev"):
        manifest = source / f"{split}.jsonl"
        manifest.write_text(manifest.read_text() + manifest.read_text().splitlines(keepends=True)[0])
    (tmp_path / "data" / "datasets" / "mvsa").symlink_to(source, target_is_directory=True)
    return "mvsa"


@pytest.mark.parametrize("field", ["dataset", "validation"])
def test_a_split_with_invalid_rows_needs_skip_invalid(
    client: TestClient, demo: str, linked_with_duplicates: str, field: str
) -> None:
    refs = {"dataset": "demo", "validation": "demo:dev", field: f"{linked_with_duplicates}:dev"}

    response = _create(client, **refs)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and "skip_invalid" in error["message"] and "duplicate" in error["message"]


def test_skip_invalid_job_trains_on_a_hand_placed_link_and_counts_the_skipped_rows(
    client: TestClient, linked_with_duplicates: str, tiny_job_params: Params
) -> None:
    job = _queue(
        client,
        tiny_job_params,
        dataset=f"{linked_with_duplicates}:train",
        validation=f"{linked_with_duplicates}:dev",
        skip_invalid=True,
    )
    assert job["skip_invalid"] is True

    _run_worker_once(client)

    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    assert done["metrics"]["skipped_rows"] == {"dataset": 1, "validation": 1}


def test_mutating_job_routes_require_the_key(client: TestClient, demo: str) -> None:
    assert client.post("/jobs", json={"dataset": "demo"}).status_code == 401
    job = _create(client, dataset="demo").json()
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 401
    assert client.get(f"/jobs/{job['id']}").status_code == 200


def test_list_filters_by_status_and_counts(client: TestClient, demo: str) -> None:
    first = _create(client, dataset="demo").json()
    _create(client, dataset="demo")
    client.post(f"/jobs/{first['id']}/cancel", headers=AUTH)

    queued = client.get("/jobs", params={"status": "queued"}).json()
    everything = client.get("/jobs").json()

    assert [job["status"] for job in queued["jobs"]] == ["queued"]
    assert len(everything["jobs"]) == 2
    assert everything["counts"]["cancelled"] == 1 and everything["counts"]["queued"] == 1
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_unknown_job_is_404(client: TestClient) -> None:
    for path in ("/jobs/nope", "/jobs/nope/events", "/jobs/nope/report.png"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_the_recipe_choices_the_api_lists_are_the_model_packages(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TrainParams"]["properties"]
    assert schema["image_encoder"]["enum"] == list(IMAGE_ENCODERS)
    assert schema["text_encoder"]["enum"] == list(TEXT_ENCODERS)
    assert schema["metric"]["enum"] == list(METRICS)
