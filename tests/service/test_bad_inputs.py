"""The hostile-input corpus: each input gets its documented status and error naming the field, never a
500, and nothing is written outside the data directory.

The corpus is built here from real bytes. Inputs that other modules already send through the API with
the same checks are not repeated (see docs/RELIABILITY.md for the full map): zip traversal, absolute
paths, links and bombs (test_datasets_routes), truncated and empty images, text over the limit and over
1 MB, JSON on /predict (test_predict), job params out of range and unknown validation labels
(test_jobs_routes).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fusion_testkit.factories import encode_image, make_image, make_jpeg, make_png, png_header_only
from fusion_testkit.zips import valid_entries, zip_entries

KEY = "corpus-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
Snapshot = dict[str, tuple[int, int]]
ClientFactory = Callable[..., TestClient]


# ---- building requests ----------------------------------------------------------------------------


def _predict_form(
    image: bytes | None, *, name: str = "photo.jpg", ctype: str = "image/jpeg"
) -> dict[str, Any]:
    files: list[Any] = [("text", (None, "a caption"))]
    if image is not None:
        files.insert(0, ("image", (name, image, ctype)))
    return {"files": files}


def _raw_multipart(body: bytes, boundary: str = "b") -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


def _upload(name: bytes, archive: bytes) -> dict[str, Any]:
    return {"files": [("name", (None, name)), ("file", ("dataset.zip", archive, "application/zip"))]}


def _raw_json(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


def _zip_with_row(row: bytes) -> bytes:
    """The small valid dataset with one more manifest row."""
    entries = valid_entries()
    entries["train.jsonl"] += row + b"\n"
    return zip_entries(entries)


def _svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32">'
        b'<rect width="32" height="32" fill="red"/></svg>\n'
    )


def _pdf() -> bytes:
    buffer = io.BytesIO()
    make_image().save(buffer, "PDF")  # a real one-page PDF holding an image
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A well-formed PNG (IHDR, one row of IDAT, IEND) whose header claims `width` x `height`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    first_row = zlib.compress(b"\x00" + bytes(3 * width), 9)
    return png_header_only(width, height) + chunk(b"IDAT", first_row) + chunk(b"IEND", b"")


def _compressible(size: int) -> bytes:
    """`size` bytes of two-bit noise: they deflate about 4:1, under any zip-bomb ratio."""
    return bytes(np.random.default_rng(0).integers(0, 4, size, dtype=np.uint8))


# From datasets/<name>/ two levels up is the data directory; the model store sits next to it.
OUTSIDE_ROW = b'{"image": "../../../models/active.json", "text": "peek", "label": "cat"}'
_JPEG_PART = (
    b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n" + make_jpeg() + b"\r\n"
)


@dataclasses.dataclass(frozen=True)
class BadInput:
    """One corpus entry: the request and the answer it must get."""

    method: str
    path: str
    request: Callable[[], dict[str, Any]]
    status: int
    code: str
    field: str | None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def _job(body: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: {"json": body}


CORPUS: dict[str, BadInput] = {
    # --- images on POST /predict
    "svg": BadInput(
        "POST", "/predict", lambda: _predict_form(_svg(), name="x.svg", ctype="image/svg+xml"),
        415, "unsupported_image_type", "image",
    ),
    "pdf": BadInput(
        "POST", "/predict", lambda: _predict_form(_pdf(), name="x.pdf", ctype="application/pdf"),
        415, "unsupported_image_type", "image",
    ),
    "text-file-named-jpg": BadInput(
        "POST", "/predict", lambda: _predict_form(b"just some notes, not a photo\n" * 20, name="holiday.jpg"),
        415, "unsupported_image_type", "image",
    ),
    "png-claiming-50000x50000": BadInput(
        "POST", "/predict", lambda: _predict_form(_png_bomb(50_000, 50_000), name="b.png", ctype="image/png"),
        413, "image_too_many_pixels", "image",
    ),
    # --- fields and bodies of POST /predict
    "predict-no-fields": BadInput(
        "POST", "/predict", lambda: _raw_multipart(b"--b--\r\n"), 422, "missing_input", "image"
    ),
    "predict-text-twice": BadInput(
        "POST", "/predict", lambda: {"files": [("text", (None, "one")), ("text", (None, "two"))]},
        422, "repeated_field", "text",
    ),
    "predict-urlencoded": BadInput(
        "POST", "/predict", lambda: {"data": {"text": "hello"}}, 415, "unsupported_media_type", None
    ),
    "predict-part-without-disposition": BadInput(
        "POST", "/predict", lambda: _raw_multipart(b"--b\r\nX-Other: 1\r\n\r\nhello\r\n--b--\r\n"),
        400, "malformed_multipart", None,
    ),
    "predict-body-cut-short": BadInput(
        "POST", "/predict",
        lambda: _raw_multipart(_JPEG_PART + b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\ncut'),
        400, "malformed_multipart", None,
    ),
    # --- POST /datasets
    "dataset-file-twice": BadInput(
        "POST", "/datasets",
        lambda: {"files": [*_upload(b"twice", zip_entries(valid_entries()))["files"],
                           ("file", ("again.zip", zip_entries(valid_entries()), "application/zip"))]},
        422, "duplicate_field", "file",
    ),
    "dataset-name-invalid-utf8": BadInput(
        "POST", "/datasets", lambda: _upload(b"caf\xe9-\xff", zip_entries(valid_entries())),
        422, "invalid_encoding", "name",
    ),
    "dataset-text-plain": BadInput(
        "POST", "/datasets", lambda: {"content": b"name=x", "headers": {"content-type": "text/plain"}},
        415, "unsupported_media_type", None,
    ),
    "dataset-part-without-disposition": BadInput(
        "POST", "/datasets", lambda: _raw_multipart(b"--b\r\nX-Other: 1\r\n\r\nhello\r\n--b--\r\n"),
        400, "malformed_multipart", None,
    ),
    "zip-drive-letter-path": BadInput(
        "POST", "/datasets", lambda: _upload(b"drive", zip_entries({**valid_entries(), "C:/evil.txt": b"x"})),
        422, "invalid_dataset", "file",
    ),
    "zip-manifest-points-outside": BadInput(
        "POST", "/datasets",
        lambda: _upload(b"outside", _zip_with_row(OUTSIDE_ROW)),
        422, "invalid_dataset", "file",
    ),
    "zip-expands-over-the-limit": BadInput(
        "POST", "/datasets",
        lambda: _upload(b"expands", zip_entries({**valid_entries(), "notes.bin": _compressible(300_000)})),
        413, "payload_too_large", "file",
        settings={"max_dataset_zip_bytes": 150_000, "max_dataset_uncompressed_bytes": 150_000},
    ),
    # --- POST /jobs
    "job-without-dataset": BadInput("POST", "/jobs", _job({}), 422, "validation_error", "dataset"),
    "job-epochs-not-a-number": BadInput(
        "POST", "/jobs", _job({"dataset": "demo", "params": {"epochs": "many"}}),
        422, "validation_error", "params.epochs",
    ),
    "job-epochs-astronomical": BadInput(
        "POST", "/jobs", _job({"dataset": "demo", "params": {"epochs": 10**30}}),
        422, "validation_error", "params.epochs",
    ),
    "job-params-not-an-object": BadInput(
        "POST", "/jobs", _job({"dataset": "demo", "params": [1, 2]}), 422, "validation_error", "params"
    ),
    "job-validation-nan": BadInput(
        "POST", "/jobs",
        lambda: _raw_json(b'{"dataset": "demo", "validation": NaN}'),
        422, "validation_error", "validation",
    ),
    "job-malformed-json": BadInput(
        "POST", "/jobs",
        lambda: _raw_json(b'{"dataset": "demo", '),
        400, "invalid_json", None,
    ),
}  # fmt: skip


# ---- what was written -----------------------------------------------------------------------------


def snapshot(root: Path) -> Snapshot:
    """Size and modification time of every file under `root`."""
    files: Snapshot = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with_stat = os.lstat(path)
            files[os.path.relpath(path, root)] = (with_stat.st_size, with_stat.st_mtime_ns)
    return files


def bytes_written_outside(before: Snapshot, after: Snapshot, data_dir: str) -> int:
    """Bytes in files created or changed between the snapshots, outside `data_dir` (relative)."""
    prefix = data_dir.rstrip("/") + "/"
    return sum(
        size for path, (size, mtime) in after.items()
        if not path.startswith(prefix) and before.get(path) != (size, mtime)
    )  # fmt: skip


def new_files_inside(before: Snapshot, after: Snapshot, data_dir: str) -> set[str]:
    """Files that appeared under `data_dir` (relative) between the snapshots."""
    prefix = data_dir.rstrip("/") + "/"
    return {path for path in after.keys() - before.keys() if path.startswith(prefix)}


@pytest.fixture
def corpus_client(
    make_client: ClientFactory,
    active_version: str,
    demo_dataset: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., TestClient]:
    """Start an app (API key set) whose temporary files, if any, land under `tmp_path/tmp` to be seen."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return lambda **overrides: make_client(api_key=KEY, **overrides)


# ---- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS.values(), ids=CORPUS.keys())
def test_bad_input_gets_its_status_and_field_and_writes_nothing(
    corpus_client: Callable[..., TestClient], tmp_path: Path, case: BadInput
) -> None:
    client = corpus_client(**case.settings)
    request = case.request()
    before = snapshot(tmp_path)

    response = client.request(
        case.method, case.path, headers={**AUTH, **request.pop("headers", {})}, **request
    )

    after = snapshot(tmp_path)
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (case.code, case.field)
    assert error["message"] and "Traceback" not in error["message"]
    assert bytes_written_outside(before, after, "data") == 0
    assert new_files_inside(before, after, "data") == set()


def _probabilities(client: TestClient, image: bytes, name: str) -> dict[str, float]:
    files: list[Any] = [("image", (name, image, "application/octet-stream")), ("text", (None, "same words"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["modalities_used"] == ["image", "text"]
    probabilities: dict[str, float] = body["probabilities"]
    return probabilities


def _lossless(image: Image.Image) -> bytes:
    return encode_image(image.convert("RGB"), "PNG")


def test_sixteen_bit_png_is_accepted_as_its_eight_bit_values(
    corpus_client: Callable[..., TestClient],
) -> None:
    client = corpus_client()
    deep = _probabilities(client, make_png(mode="I;16"), "deep.png")
    assert deep == pytest.approx(_probabilities(client, make_png(mode="L"), "flat.png"), abs=1e-6)


def test_cmyk_jpeg_is_accepted(corpus_client: Callable[..., TestClient]) -> None:
    probabilities = _probabilities(corpus_client(), make_jpeg(mode="CMYK"), "print.jpg")
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_animated_gif_is_read_as_its_first_frame(corpus_client: Callable[..., TestClient]) -> None:
    client = corpus_client()
    first, second = make_image((230, 20, 20)), make_image((20, 20, 230))
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    animated = buffer.getvalue()
    assert getattr(Image.open(io.BytesIO(animated)), "n_frames", 1) == 2

    answer = _probabilities(client, animated, "anim.gif")

    assert answer == pytest.approx(_probabilities(client, encode_image(first, "GIF"), "one.gif"), abs=1e-6)
    assert answer != _probabilities(client, encode_image(second, "GIF"), "two.gif")


def test_exif_rotated_photo_is_turned_upright(corpus_client: Callable[..., TestClient]) -> None:
    client = corpus_client()
    tagged = make_jpeg(size=(48, 24), exif_orientation=6)  # "rotate 90 degrees clockwise to display"
    stored = Image.open(io.BytesIO(tagged))
    stored.load()  # the pixels as stored, before the orientation is applied

    answer = _probabilities(client, tagged, "phone.jpg")

    upright = _probabilities(client, _lossless(stored.transpose(Image.Transpose.ROTATE_270)), "upright.png")
    assert answer == pytest.approx(upright, abs=1e-5)
    assert answer != _probabilities(client, _lossless(stored), "sideways.png")


def test_image_over_one_megabyte_is_accepted_and_leaves_no_spooled_file(
    corpus_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = corpus_client(max_image_bytes=4 * 1024 * 1024)
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    big = encode_image(Image.fromarray(noise), "PNG")
    assert len(big) > 1024 * 1024  # past Starlette's in-memory spool: the part goes to a temp file
    before = snapshot(tmp_path)

    _probabilities(client, big, "big.png")

    assert bytes_written_outside(before, snapshot(tmp_path), "data") == 0
    assert os.listdir(tmp_path / "tmp") == []


def test_valid_upload_writes_only_inside_the_data_directory(
    corpus_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = corpus_client()
    before = snapshot(tmp_path)

    response = client.post("/datasets", headers=AUTH, **_upload(b"fine", zip_entries(valid_entries())))

    after = snapshot(tmp_path)
    assert response.status_code == 201, response.text
    assert bytes_written_outside(before, after, "data") == 0
    assert {Path(p).parts[:3] for p in new_files_inside(before, after, "data")} == {
        ("data", "datasets", "fine")
    }
