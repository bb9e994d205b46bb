"""/datasets routes: upload (streamed, checked, validated), list, describe, delete, auth and limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusion_testkit.zips import demo_zip, tree, valid_entries, with_symlink, zip_entries
from model.demo_data import write_demo_dataset

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ClientFactory = Callable[..., TestClient]


def _upload(
    client: TestClient,
    name: str | None,
    data: bytes | None,
    *,
    skip_invalid: str | None = None,
    **kwargs: Any,
) -> Any:
    """POST /datasets as multipart/form-data, leaving out the parts that are None."""
    parts: list[tuple[str, Any]] = []
    if name is not None:
        parts.append(("name", (None, name.encode())))
    if skip_invalid is not None:
        parts.append(("skip_invalid", (None, skip_invalid.encode())))
    if data is not None:
        parts.append(("file", ("dataset.zip", data, "application/zip")))
    return client.post("/datasets", files=parts, **kwargs)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client(api_key=KEY)


def _error(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_upload_creates_a_dataset_that_is_listed_and_described(client: TestClient, tmp_path: Path) -> None:
    response = _upload(client, "demo", demo_zip(tmp_path, 4), headers=AUTH)

    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/datasets/demo"
    body = response.json()
    assert (body["name"], body["samples"], body["label_counts"]) == (
        "demo",
        8,
        {"negative": 4, "positive": 4},
    )
    assert {split["name"] for split in body["splits"]} == {"train", "dev"}
    assert [d["name"] for d in client.get("/datasets").json()["datasets"]] == ["demo"]
    assert client.get("/datasets/demo").json()["samples"] == 8


def test_mutating_routes_require_the_key(client: TestClient, tmp_path: Path) -> None:
    data = zip_entries(valid_entries())

    assert _upload(client, "small", data).status_code == 401
    assert _upload(client, "small", data, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert _upload(client, "small", data, headers=AUTH).status_code == 201
    assert client.delete("/datasets/small").status_code == 401
    assert client.get("/datasets/small").status_code == 200


def test_delete_removes_the_dataset(client: TestClient) -> None:
    _upload(client, "small", zip_entries(valid_entries()), headers=AUTH)

    assert client.delete("/datasets/small", headers=AUTH).status_code == 204
    response = client.get("/datasets/small")
    assert response.status_code == 404 and _error(response)["code"] == "dataset_not_found"


def test_delete_of_a_dataset_in_use_is_a_conflict(client: TestClient) -> None:
    _upload(client, "small", zip_entries(valid_entries()), headers=AUTH)
    client.app.state.job_store.create("small")  # type: ignore[attr-defined]

    response = client.delete("/datasets/small", headers=AUTH)

    assert response.status_code == 409 and _error(response)["code"] == "dataset_in_use"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (zip_entries({**valid_entries(), "../../../../evil.txt": b"x"}), "traversal"),
        (zip_entries({**valid_entries(), "/tmp/evil.txt": b"x"}), "absolute"),
        (with_symlink(valid_entries(), "images/7.jpg", "/etc/passwd"), "symbolic link"),
        (zip_entries({**valid_entries(), "images/bomb.bin": bytes(4 * 1024 * 1024)}), "zip bomb"),
        (b"PK\x03\x04 but not really a zip", "zip"),
    ],
    ids=["traversal", "absolute", "symlink", "bomb", "not-a-zip"],
)
def test_hostile_zips_are_refused_and_nothing_is_written(
    client: TestClient, tmp_path: Path, data: bytes, needle: str
) -> None:
    before = tree(tmp_path)

    response = _upload(client, "hostile", data, headers=AUTH)

    assert response.status_code == 422
    assert _error(response)["field"] == "file" and needle in _error(response)["message"]
    assert tree(tmp_path) == before


def test_invalid_dataset_content_is_refused_with_the_problems(client: TestClient) -> None:
    entries = valid_entries()
    entries["train.jsonl"] += b'{"image": "images/none.jpg", "text": "t", "label": "cat"}\n'
    entries["train.jsonl"] += b'{"image": "../../outside.jpg", "text": "t", "label": "dog"}\n'

    response = _upload(client, "broken", zip_entries(entries), headers=AUTH)

    assert response.status_code == 422
    message = _error(response)["message"]
    assert "missing_image" in message and "path_outside_root" in message


def _with_duplicate_row() -> dict[str, bytes]:
    entries = valid_entries()
    entries["train.jsonl"] += entries["train.jsonl"].splitlines(keepends=True)[0]
    return entries


def test_invalid_rows_are_refused_unless_skip_invalid(client: TestClient) -> None:
    refused = _upload(client, "dup", zip_entries(_with_duplicate_row()), headers=AUTH)
    assert refused.status_code == 422 and "duplicate" in _error(refused)["message"]

    response = _upload(client, "dup", zip_entries(_with_duplicate_row()), skip_invalid="true", headers=AUTH)

    assert response.status_code == 201, response.text
    (split,) = response.json()["splits"]
    assert (split["samples"], split["skipped"], split["problem_counts"]) == (6, 1, {"duplicate": 1})


def test_skip_invalid_must_be_a_boolean(client: TestClient) -> None:
    response = _upload(client, "dup", zip_entries(valid_entries()), skip_invalid="maybe", headers=AUTH)

    assert response.status_code == 422 and _error(response)["field"] == "skip_invalid"


def test_hand_placed_dataset_with_invalid_rows_is_described_with_the_counts(
    client: TestClient, tmp_path: Path
) -> None:
    source = write_demo_dataset(tmp_path / "elsewhere", n_per_class=4)
    for split in ("train", "dev"):
        manifest = source / f"{split}.jsonl"
        manifest.write_text(manifest.read_text() + manifest.read_text().splitlines(keepends=True)[0])
    (tmp_path / "data" / "datasets" / "linked").symlink_to(source, target_is_directory=True)

    response = client.get("/datasets/linked")

    assert response.status_code == 200, response.text
    splits = {split["name"]: split for split in response.json()["splits"]}
    assert {name: split["problem_counts"] for name, split in splits.items()} == {
        "dev": {"duplicate": 1},
        "train": {"duplicate": 1},
    }
    assert splits["train"]["samples"] == 8


def test_upload_over_the_size_limit_is_413(make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(max_dataset_zip_bytes=2000, max_dataset_uncompressed_bytes=10**6)
    before = tree(tmp_path)

    response = _upload(client, "big", demo_zip(tmp_path / "src", 4))

    assert response.status_code == 413 and _error(response)["field"] == "file"
    assert tree(tmp_path) - before == {"src", *(f"src/{p}" for p in tree(tmp_path / "src"))}


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (None, zip_entries(valid_entries()), "name"),
        ("nofile", None, "file"),
        ("Bad Name", zip_entries(valid_entries()), "name"),
    ],
)
def test_missing_or_bad_fields_name_the_field(
    client: TestClient, name: str | None, data: bytes | None, field: str
) -> None:
    response = _upload(client, name, data, headers=AUTH)

    assert response.status_code == 422 and _error(response)["field"] == field


def test_existing_name_is_a_conflict(client: TestClient) -> None:
    _upload(client, "small", zip_entries(valid_entries()), headers=AUTH)

    response = _upload(client, "small", zip_entries(valid_entries()), headers=AUTH)

    assert response.status_code == 409 and _error(response)["code"] == "dataset_exists"


def test_json_body_is_unsupported_media_type(client: TestClient) -> None:
    response = client.post("/datasets", json={"name": "x"}, headers=AUTH)

    assert response.status_code == 415


def test_malformed_multipart_body_is_400(client: TestClient) -> None:
    body = b'--XYZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nabc\r\n--XYZ\r\nContent-Dispo'
    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=XYZ"}

    response = client.post("/datasets", content=body, headers=headers)

    assert response.status_code == 400 and _error(response)["code"] == "malformed_multipart"


def test_duplicated_name_field_is_refused(client: TestClient) -> None:
    files: list[tuple[str, Any]] = [
        ("name", (None, b"one")),
        ("name", (None, b"two")),
        ("file", ("d.zip", zip_entries(valid_entries()), "application/zip")),
    ]

    response = client.post("/datasets", files=files, headers=AUTH)

    assert response.status_code == 422 and _error(response)["field"] == "name"


def test_unknown_dataset_is_404(client: TestClient) -> None:
    assert client.get("/datasets/nothing-here").status_code == 404
    assert client.delete("/datasets/nothing-here", headers=AUTH).status_code == 404
