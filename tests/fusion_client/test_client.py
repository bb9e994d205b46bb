"""`fusion_client.Client` against a real uvicorn serving a tiny model (and a real worker in a thread)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from fusion_client import Client, Dataset, FusionAPIError, ItemError, Prediction
from fusion_testkit.factories import make_jpeg, make_png, save_tiny_checkpoint
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.live_server import KEY, LiveService
from model.demo_data import write_demo_dataset

TINY = {**TINY_JOB_PARAMS, "epochs": 3}


@pytest.fixture
def demo(api: Client, tmp_path: Path) -> Dataset:
    """The demo dataset, uploaded as a folder."""
    return api.upload_dataset("demo", write_demo_dataset(tmp_path / "demo-src", n_per_class=12))


def test_predict_takes_a_path_bytes_a_file_or_a_pil_image(api: Client, tmp_path: Path) -> None:
    jpeg = make_jpeg((30, 60, 200), (48, 40))
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg)
    pixels = Image.open(io.BytesIO(jpeg))
    with path.open("rb") as file:
        answers = [api.predict(image, "a calm sea") for image in (path, str(path), jpeg, file, pixels)]
    assert all(isinstance(answer, Prediction) for answer in answers)
    assert answers[0].modalities_used == ["image", "text"]
    # The same pixels whichever way they were given (the PIL image is sent as lossless PNG).
    first = answers[0].probabilities
    for answer in answers[1:]:
        assert answer.probabilities == pytest.approx(first, abs=1e-3)
    assert set(first) == {"negative", "positive"} and answers[0].label in first


def test_explain_adds_both_single_modality_predictions(api: Client) -> None:
    answer = api.predict(make_png(), "so happy", explain=True)
    assert answer.image_only is not None and answer.text_only is not None
    assert sum(answer.image_only.probabilities.values()) == pytest.approx(1.0)
    assert api.predict(make_png(), "so happy").image_only is None


def test_predict_batch_keeps_order_and_reports_the_bad_item_in_its_place(api: Client) -> None:
    answers = api.predict_batch(
        [(make_jpeg(), "first"), (b"this is not an image", "second"), {"image": None, "text": "third only"}]
    )
    assert [type(answer) for answer in answers] == [Prediction, ItemError, Prediction]
    bad = answers[1]
    assert isinstance(bad, ItemError) and bad.code == "unsupported_image_type" and bad.field == "images[1]"
    third = answers[2]
    assert isinstance(third, Prediction) and third.modalities_used == ["text"]


def test_an_api_error_carries_status_code_message_and_field(api: Client) -> None:
    with pytest.raises(FusionAPIError) as error:
        api.predict(make_jpeg(), "x" * 6000)
    assert (error.value.status, error.value.code, error.value.field) == (413, "text_too_long", "text")
    assert "6000 characters" in error.value.message
    with pytest.raises(FusionAPIError) as missing:
        api.dataset("nothing-here")
    assert (missing.value.status, missing.value.code) == (404, "dataset_not_found")


def test_upload_a_folder_zipped_on_the_fly_or_a_zip(api: Client, tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo-src", n_per_class=6)
    (root / ".DS_Store").write_bytes(b"\0junk")  # hidden files stay out of the zip
    from_folder = api.upload_dataset("from-folder", root)
    assert isinstance(from_folder, Dataset)
    assert from_folder.samples == 12 and from_folder.label_counts == {"negative": 6, "positive": 6}
    assert {split.name for split in from_folder.splits} == {"train", "dev"}

    archive = tmp_path / "demo.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(root.rglob("*")):
            if file.is_file() and file.name != ".DS_Store":
                bundle.write(file, file.relative_to(root).as_posix())
    from_zip = api.upload_dataset("from-zip", archive)
    assert from_zip.splits[0].fingerprint in {split.fingerprint for split in from_folder.splits}
    with pytest.raises(FusionAPIError) as taken:
        api.upload_dataset("from-zip", archive)
    assert (taken.value.status, taken.value.code, taken.value.field) == (409, "dataset_exists", "name")


def test_train_waits_with_a_progress_bar_fed_by_the_events_and_promotes(
    api: Client, service: LiveService, demo: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    job = api.train("demo", params=TINY, validation="demo:dev", promote="always")
    assert job.status == "queued" and job.info.params["epochs"] == 3
    worker = service.run_worker_once()
    final = job.wait(progress=True)
    worker.join(60)

    assert final.status == "succeeded" and final.promoted and final is job.info
    assert [entry["epoch"] for entry in final.history] == [1, 2, 3]
    bar = capsys.readouterr().err
    assert "epoch 3/3" in bar and "succeeded" in bar
    assert api.active_model().version == final.model_version
    events = list(job.events())  # a finished job's stream is its one `end` event
    assert [event.event for event in events] == ["end"] and events[0].job.status == "succeeded"


def test_train_sends_test_and_cv_only_when_given(api: Client, demo: Dataset) -> None:
    plain = api.train("demo", params=TINY)
    assert (plain.info.test, plain.info.cv, plain.info.validation) == (None, None, None)
    with_both = api.train("demo", params=TINY, validation=0.25, test="demo:dev", cv=2, promote="never")
    assert (with_both.info.test, with_both.info.cv) == ("demo:dev", {"folds": 2})
    assert with_both.info.promote == "never" and with_both.info.queue_position == 2
    with pytest.raises(FusionAPIError) as error:
        api.train("demo", params={**TINY, "epochs": 0})
    assert (error.value.status, error.value.field) == (422, "params.epochs")


def test_cancel_a_running_job(api: Client, service: LiveService, demo: Dataset) -> None:
    job = api.train("demo", params={**TINY, "epochs": 500}, validation="demo:dev")
    worker = service.run_worker_once()
    for event in job.events():
        if event.job.status == "running":
            break
    cancelled = job.cancel()
    assert cancelled.cancel_requested
    final = job.wait(progress=False)
    worker.join(60)
    assert final.status == "cancelled" and final.model_version is None
    assert job.refresh().status == "cancelled"
    with pytest.raises(FusionAPIError) as again:
        job.cancel()
    assert (again.value.status, again.value.code) == (409, "job_finished")


def test_activate_switches_and_rolls_back(api: Client, service: LiveService) -> None:
    newer = save_tiny_checkpoint(service.store.new_version_path(), labels=("cat", "dog")).name
    assert api.activate(newer).version == newer
    assert set(api.predict(make_jpeg(), "a pet").probabilities) == {"cat", "dog"}
    listing = api.models()
    assert listing.active == newer and [v.version for v in listing.versions] == [service.first_version, newer]
    api.activate(service.first_version)
    assert api.active_model().version == service.first_version
    with pytest.raises(FusionAPIError) as unknown:
        api.activate("no-such-version")
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        404,
        "unknown_version",
        "version",
    )


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_missing_or_wrong_key_is_401_naming_the_header(service: LiveService, key: str | None) -> None:
    with Client(service.url, api_key=key) as client:
        assert client.predict(make_jpeg(), "reading needs no key").label
        with pytest.raises(FusionAPIError) as error:
            client.activate(service.first_version)
    assert (error.value.status, error.value.code, error.value.field) == (401, "unauthorized", "Authorization")


def test_predict_needs_the_key_when_the_service_says_so(start_service: Callable[..., LiveService]) -> None:
    service = start_service(require_key_for_predict=True)
    with Client(service.url) as anonymous, pytest.raises(FusionAPIError) as error:
        anonymous.predict(make_jpeg(), "hello")
    assert error.value.status == 401
    with Client(service.url, api_key=KEY) as client:
        assert client.predict(make_jpeg(), "hello").model_version == service.first_version


def test_health_says_ready_with_the_serving_version(api: Client, service: LiveService) -> None:
    health = api.health()
    assert health.live and health.ready and health.model_version == service.first_version
    assert health.device == "cpu"


def test_health_of_an_empty_store_is_live_but_not_ready(start_service: Callable[..., LiveService]) -> None:
    service = start_service(empty=True)
    with Client(service.url) as client:
        health = client.health()
        assert health.live and not health.ready and health.model_version is None
        assert health.reason
        with pytest.raises(FusionAPIError) as error:  # not_ready has no Retry-After: raised at once
            client.predict(make_jpeg(), "anyone there?")
    assert (error.value.status, error.value.code, error.value.retry_after) == (503, "not_ready", None)
