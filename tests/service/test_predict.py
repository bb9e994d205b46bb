"""POST /predict and /predict/batch: real images and texts, explanations, and every bad-input case."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusion_testkit.factories import (
    VersionFactory,
    encode_image,
    make_image,
    make_jpeg,
    make_png,
    png_header_only,
)
from service.runtime.batcher import MicroBatcher

ClientFactory = Callable[..., TestClient]


def _files(image: bytes | None = None, text: str | bytes | None = None, name: str = "photo.jpg") -> list[Any]:
    parts: list[Any] = []
    if image is not None:
        parts.append(("image", (name, image, "image/jpeg")))
    if text is not None:
        parts.append(("text", (None, text)))
    return parts


def _assert_error(response: Any, status: int, field: str | None, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"]
    if code is not None:
        assert error["code"] == code


# --- single predictions ----------------------------------------------------------------------


def test_predict_jpeg_and_text(client: TestClient, active_version: str) -> None:
    response = client.post("/predict", files=_files(make_jpeg(), "what a lovely day"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == {"negative", "positive"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["model_version"] == active_version
    assert body["modalities_used"] == ["image", "text"]
    assert body["image_only"] is None and body["gate"] is None


def test_explain_adds_single_modality_predictions_and_gate(client: TestClient) -> None:
    body = client.post("/predict?explain=true", files=_files(make_jpeg(), "lovely")).json()
    for key in ("image_only", "text_only"):
        assert sum(body[key]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert body[key]["label"] in body[key]["probabilities"]
    assert set(body["gate"]) == {"image", "text"}
    assert sum(body["gate"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("files", "used"),
    [(_files(make_png(), None), ["image"]), (_files(None, "only words"), ["text"])],
)
def test_one_modality_is_enough_when_the_model_supports_it(
    client: TestClient, files: list[Any], used: list[str]
) -> None:
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    assert response.json()["modalities_used"] == used


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "BMP"])
def test_other_allowed_formats_are_accepted(client: TestClient, fmt: str) -> None:
    data = encode_image(make_image(size=(40, 30)), fmt)
    response = client.post("/predict", files=_files(data, "hello", name=f"x.{fmt.lower()}"))
    assert response.status_code == 200, response.text


def test_missing_modality_refused_when_model_needs_both(
    store: Any, make_version: VersionFactory, make_client: ClientFactory
) -> None:
    store.activate(make_version(modality_dropout=0.0))
    client = make_client()
    _assert_error(client.post("/predict", files=_files(None, "text only")), 422, "image", "missing_image")


def test_nothing_to_predict_is_422(client: TestClient) -> None:
    _assert_error(client.post("/predict", files=_files(None, "   ")), 422, "image", "missing_input")


def test_predict_without_a_model_is_503_with_the_reason(empty_client: TestClient) -> None:
    response = empty_client.post("/predict", files=_files(make_jpeg(), "hi"))
    _assert_error(response, 503, None, "not_ready")
    assert "no model versions" in response.json()["error"]["message"]


# --- limits and bad input --------------------------------------------------------------------


def test_image_over_max_bytes_is_413(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(max_image_bytes=2000)
    big = make_jpeg(size=(300, 300), quality=100)
    assert len(big) > 2000
    _assert_error(client.post("/predict", files=_files(big, "hi")), 413, "image")


def test_body_over_limit_is_refused_from_its_content_length(
    make_client: ClientFactory, active_version: str
) -> None:
    client = make_client(max_image_bytes=1000, max_text_chars=10)
    body = b"x" * 200_000
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(len(body))}
    _assert_error(client.post("/predict", content=body, headers=headers), 413, "image", "request_too_large")


def test_streamed_body_over_limit_is_cut_off(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(max_image_bytes=1000, max_text_chars=10)
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    chunks = iter([head] + [b"x" * 10_000] * 20)  # no Content-Length: sent chunked
    headers = {"content-type": "multipart/form-data; boundary=b"}
    _assert_error(client.post("/predict", content=chunks, headers=headers), 413, "image", "request_too_large")


def test_too_many_pixels_is_413(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(max_image_pixels=1000)
    _assert_error(client.post("/predict", files=_files(make_jpeg(size=(40, 40)), "hi")), 413, "image")


def test_decompression_bomb_header_is_413(client: TestClient) -> None:
    bomb = png_header_only(100_000, 100_000)
    _assert_error(client.post("/predict", files=_files(bomb, "hi", name="b.png")), 413, "image")


def test_image_type_not_allowed_is_415(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(allowed_image_types="png")
    response = client.post("/predict", files=_files(make_jpeg(), "hi"))
    _assert_error(response, 415, "image", "unsupported_image_type")
    assert "JPEG" in response.json()["error"]["message"]


def test_bytes_that_are_no_image_are_415(client: TestClient) -> None:
    _assert_error(client.post("/predict", files=_files(b"%PDF-1.4 not an image", "hi")), 415, "image")


def test_truncated_image_is_422(client: TestClient) -> None:
    _assert_error(
        client.post("/predict", files=_files(make_jpeg()[:100], "hi")), 422, "image", "invalid_image"
    )


def test_empty_named_file_is_422(client: TestClient) -> None:
    _assert_error(client.post("/predict", files=_files(b"", "hi")), 422, "image")


def test_text_over_max_chars_is_413(client: TestClient) -> None:
    _assert_error(
        client.post("/predict", files=_files(make_jpeg(), "a" * 5001)), 413, "text", "text_too_long"
    )


def test_text_over_one_megabyte_still_names_the_text_field(client: TestClient) -> None:
    response = client.post("/predict", files=_files(make_jpeg(), "a" * 1_500_000))
    _assert_error(response, 413, "text", "text_too_long")


def test_invalid_utf8_text_is_not_a_server_error(client: TestClient) -> None:
    response = client.post("/predict", files=_files(make_jpeg(), b"caf\xe9 \xff\xfe"))
    assert response.status_code == 200, response.text


def test_json_body_is_415(client: TestClient) -> None:
    _assert_error(client.post("/predict", json={"text": "hi"}), 415, None, "unsupported_media_type")


def test_multipart_without_boundary_is_400(client: TestClient) -> None:
    response = client.post("/predict", content=b"abc", headers={"content-type": "multipart/form-data"})
    _assert_error(response, 400, None, "malformed_multipart")


def test_image_sent_as_text_field_is_422(client: TestClient) -> None:
    _assert_error(
        client.post("/predict", files=[("image", (None, "not a file"))]), 422, "image", "not_a_file"
    )


def test_text_sent_as_file_is_422(client: TestClient) -> None:
    files: list[Any] = [("text", ("t.txt", b"hello", "text/plain"))]
    _assert_error(client.post("/predict", files=files), 422, "text", "not_a_text")


def test_unknown_field_is_named(client: TestClient) -> None:
    files: list[Any] = [("file", ("a.jpg", make_jpeg(), "image/jpeg"))]
    _assert_error(client.post("/predict", files=files), 422, "file", "unknown_field")


def test_two_images_on_single_predict_is_422(client: TestClient) -> None:
    files: list[Any] = [
        ("image", ("a.jpg", make_jpeg(), "image/jpeg")),
        ("image", ("b.jpg", make_jpeg(), "image/jpeg")),
    ]
    _assert_error(client.post("/predict", files=files), 422, "image", "repeated_field")


# --- batches ---------------------------------------------------------------------------------

BATCH_IMAGES = [make_jpeg((200, 30, 30)), make_png((20, 180, 40)), make_jpeg((10, 10, 220))]
BATCH_TEXTS = ["sunny and warm", "cold rain again", "meh"]


def _single(client: TestClient, image: bytes | None, text: str | None) -> dict[str, float]:
    response = client.post("/predict", files=_files(image, text))
    assert response.status_code == 200, response.text
    probabilities: dict[str, float] = response.json()["probabilities"]
    return probabilities


def _assert_same(batch_item: dict[str, Any], single: dict[str, float]) -> None:
    for label, p in single.items():
        assert batch_item["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_batch_multipart_answers_in_order(client: TestClient) -> None:
    files: list[Any] = [("images", (f"{i}.img", img, "image/jpeg")) for i, img in enumerate(BATCH_IMAGES)]
    files += [("texts", (None, text)) for text in BATCH_TEXTS]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    for item, img, text in zip(predictions, BATCH_IMAGES, BATCH_TEXTS, strict=True):
        _assert_same(item, _single(client, img, text))


def test_batch_json_base64_answers_in_order(client: TestClient) -> None:
    items = [
        {"image_base64": base64.b64encode(img).decode(), "text": text}
        for img, text in zip(BATCH_IMAGES, BATCH_TEXTS, strict=True)
    ]
    items.append({"text": "text only"})
    response = client.post("/predict/batch?explain=true", json={"items": items})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    for item, img, text in zip(predictions[:3], BATCH_IMAGES, BATCH_TEXTS, strict=True):
        _assert_same(item, _single(client, img, text))
        assert item["gate"] is not None
    assert predictions[3]["modalities_used"] == ["text"]


def test_batch_empty_part_stands_for_a_missing_input(client: TestClient) -> None:
    files: list[Any] = [
        ("images", ("a.jpg", make_jpeg(), "image/jpeg")),
        ("images", ("", b"", "application/octet-stream")),
    ]
    files += [("texts", (None, "")), ("texts", (None, "words"))]
    predictions = client.post("/predict/batch", files=files).json()["predictions"]
    assert [p["modalities_used"] for p in predictions] == [["image"], ["text"]]


def test_batch_bad_items_get_their_own_errors(client: TestClient) -> None:
    items = [
        {"image_base64": base64.b64encode(make_jpeg()).decode(), "text": "fine"},
        {"image_base64": base64.b64encode(b"garbage").decode(), "text": "x"},
        {"image_base64": "@@not base64@@"},
        {"text": "b" * 6000},
        {"text": "fine too"},
    ]
    predictions = client.post("/predict/batch", json={"items": items}).json()["predictions"]
    assert predictions[0]["modalities_used"] == ["image", "text"]
    assert predictions[1]["error"]["field"] == "items.1.image_base64"
    assert predictions[1]["error"]["code"] == "unsupported_image_type"
    assert predictions[2]["error"]["code"] == "invalid_base64"
    assert predictions[3]["error"] == {
        "code": "text_too_long",
        "message": predictions[3]["error"]["message"],
        "field": "items.3.text",
    }
    assert predictions[4]["modalities_used"] == ["text"]


def test_batch_unpaired_images_and_texts_is_422(client: TestClient) -> None:
    files: list[Any] = [
        ("images", ("a.jpg", make_jpeg(), "image/jpeg")),
        ("texts", (None, "a")),
        ("texts", (None, "b")),
    ]
    _assert_error(client.post("/predict/batch", files=files), 422, "texts", "unpaired_items")


def test_batch_over_max_items_is_413(make_client: ClientFactory, active_version: str) -> None:
    client = make_client(max_batch_items=2)
    items = [{"text": f"t{i}"} for i in range(3)]
    _assert_error(client.post("/predict/batch", json={"items": items}), 413, "items", "too_many_items")


def test_batch_empty_items_names_the_field(client: TestClient) -> None:
    _assert_error(client.post("/predict/batch", json={"items": []}), 422, "items", "validation_error")


def test_batch_wrong_item_type_names_the_field(client: TestClient) -> None:
    _assert_error(client.post("/predict/batch", json={"items": [{"text": 5}]}), 422, "items.0.text")


def test_batch_invalid_json_is_400(client: TestClient) -> None:
    response = client.post("/predict/batch", content=b"{oops", headers={"content-type": "application/json"})
    _assert_error(response, 400, None, "invalid_json")


def test_batch_text_plain_is_415(client: TestClient) -> None:
    response = client.post("/predict/batch", content=b"hello", headers={"content-type": "text/plain"})
    _assert_error(response, 415, None, "unsupported_media_type")


def test_full_queue_is_503_with_retry_after(client: TestClient) -> None:
    app: Any = client.app
    release = threading.Event()

    def slow_decode(predictor: Any, data: bytes) -> Any:
        release.wait(5)
        return predictor.preprocess_image(data)

    blocked = MicroBatcher(app.state.model_holder, decode=slow_decode, max_queue=1)
    blocked.start()
    original, app.state.batcher = app.state.batcher, blocked
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/predict", files=_files(make_jpeg(), "first"))
            deadline = time.monotonic() + 5
            while blocked.depth < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            response = client.post("/predict", files=_files(None, "second"))
            release.set()
            assert first.result().status_code == 200
    finally:
        release.set()
        app.state.batcher = original
        blocked.stop()
    _assert_error(response, 503, None, "overloaded")
    assert int(response.headers["retry-after"]) >= 1
