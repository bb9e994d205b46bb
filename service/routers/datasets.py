"""Datasets: upload a zip, list, inspect and delete the datasets under the data directory."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import TypeAdapter, ValidationError

from service.deps import DatasetStoreDep, JobStoreDep, SettingsDep
from service.errors import APIError
from service.requests.multipart_stream import stream_form_to_file
from service.runtime.dataset_store import (
    NAME_PATTERN,
    DatasetExists,
    DatasetInUse,
    DatasetNotFound,
    DatasetStoreError,
    InvalidDataset,
    UploadTooLarge,
    check_name,
)
from service.schemas import examples
from service.schemas.common import (
    INSUFFICIENT_STORAGE,
    JOB_DATABASE_UNAVAILABLE,
    UNAUTHORIZED,
    ErrorDoc,
    error_responses,
    example_response,
)
from service.schemas.datasets import DatasetList, DatasetPublic
from service.security import RequireKey

router = APIRouter(prefix="/datasets", tags=["datasets"])

_ERRORS: dict[type[DatasetStoreError], tuple[int, str]] = {
    DatasetNotFound: (404, "dataset_not_found"),
    DatasetExists: (409, "dataset_exists"),
    DatasetInUse: (409, "dataset_in_use"),
    UploadTooLarge: (413, "payload_too_large"),
    InvalidDataset: (422, "invalid_dataset"),
}

_BOOL = TypeAdapter(bool)
DatasetName = Annotated[
    str,
    Path(
        description="A dataset name as listed by `GET /datasets`",
        openapi_examples={"a dataset": {"value": "tweets"}},
    ),
]
_NOT_FOUND: ErrorDoc = (404, "dataset_not_found", "no dataset named 'tweets'", "name")
_BAD_NAME: ErrorDoc = (
    422,
    "invalid_dataset",
    "invalid dataset name 'My Tweets!': use 1-64 lowercase letters, digits, '-' or '_', starting with a"
    " letter or digit",
    "name",
)
# Only FastAPI's own request validation (e.g. a missing path segment) answers 422 on the name routes.
_PATH_ERROR: ErrorDoc = (422, "validation_error", "name: Field required", "name")

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["name", "file"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": NAME_PATTERN,
                        "description": "name of the new dataset",
                        "example": "tweets",
                    },
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "a zip: a manifest (train.jsonl / .csv, optionally dev/test) with the"
                        " images it names, or label folders holding <name>.jpg + <name>.txt;"
                        " one top-level folder around it is fine",
                    },
                    "skip_invalid": {
                        "type": "boolean",
                        "default": False,
                        "example": False,
                        "description": "drop invalid rows (duplicates, missing images, ...) instead of"
                        " refusing the upload; the count per split is in the response",
                    },
                },
            }
        }
    },
}


def _form_bool(fields: dict[str, str], name: str) -> bool:
    """An optional boolean form field (true/false, 1/0, yes/no, on/off); absent is false."""
    try:
        return _BOOL.validate_python(fields.get(name, False))
    except ValidationError:
        raise APIError(422, "validation_error", f"{name}: expected a boolean (true or false)", name) from None


def api_error(exc: DatasetStoreError) -> APIError:
    """The HTTP error for a dataset-store error."""
    status_code, code = next(v for k, v in _ERRORS.items() if isinstance(exc, k))
    return APIError(status_code, code, exc.message, exc.field)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset (zip)",
    dependencies=[RequireKey],
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        201: example_response(examples.DATASET, "The new dataset's summary; `Location` names it"),
        **error_responses(
            (
                400,
                "malformed_multipart",
                "malformed multipart body: it ends before the closing boundary",
                None,
            ),
            UNAUTHORIZED,
            (409, "dataset_exists", "a dataset named 'tweets' already exists", "name"),
            (413, "payload_too_large", "file: upload is over the limit of 1073741824 bytes", "file"),
            (415, "unsupported_media_type", "expected multipart/form-data, got application/zip", None),
            (422, "missing_field", "file: a zip file is required", "file"),
            _BAD_NAME,
            (
                422,
                "invalid_dataset",
                "zip entry '../evil.txt' leaves the archive (path traversal)",
                "file",
            ),
            INSUFFICIENT_STORAGE,
        ),
    },
)
async def upload_dataset(
    request: Request, response: Response, settings: SettingsDep, store: DatasetStoreDep
) -> DatasetPublic:
    """Upload a zip with a `name`; every entry is checked before anything is extracted, then the content
    is validated like a training run would (missing or unreadable images, empty texts, duplicates, ...).
    With `skip_invalid=true` invalid rows are left out (and counted per split) instead of refusing it.

    Refused: entries with `../` or absolute paths, links, duplicate names, archives that expand too much
    (zip bombs) and manifests that point outside the archive.
    """
    with store.staging_file() as archive:
        form = await stream_form_to_file(
            request, file_field="file", dest=archive, max_file_bytes=settings.max_dataset_zip_bytes
        )
        name = form.fields.get("name")
        if name is None:
            raise APIError(422, "missing_field", "name: field required", "name")
        if form.file_bytes is None:
            raise APIError(422, "missing_field", "file: a zip file is required", "file")
        skip_invalid = _form_bool(form.fields, "skip_invalid")
        try:
            check_name(name)
            info = await asyncio.to_thread(store.create_from_zip, name, archive, skip_invalid=skip_invalid)
        except DatasetStoreError as exc:
            raise api_error(exc) from None
    response.headers["Location"] = f"/datasets/{info.name}"
    return DatasetPublic.from_info(info)


@router.get("", summary="List datasets", responses={200: example_response(examples.DATASET_LIST)})
async def list_datasets(store: DatasetStoreDep) -> DatasetList:
    """Every dataset under the data directory, uploaded or placed there by hand."""
    infos = await asyncio.to_thread(store.list)
    return DatasetList(datasets=[DatasetPublic.from_info(info) for info in infos])


@router.get(
    "/{name}",
    summary="Describe a dataset",
    responses={200: example_response(examples.DATASET), **error_responses(_NOT_FOUND, _PATH_ERROR)},
)
async def get_dataset(name: DatasetName, store: DatasetStoreDep) -> DatasetPublic:
    """Sample count and label distribution of each split (manifest) of a dataset."""
    try:
        info = await asyncio.to_thread(store.info, name)
    except InvalidDataset:
        raise APIError(404, "dataset_not_found", f"no dataset named {name[:80]!r}", "name") from None
    except DatasetStoreError as exc:
        raise api_error(exc) from None
    return DatasetPublic.from_info(info)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset",
    dependencies=[RequireKey],
    responses={
        204: {"description": "Deleted (no body)"},
        **error_responses(
            UNAUTHORIZED,
            JOB_DATABASE_UNAVAILABLE,
            _NOT_FOUND,
            (
                409,
                "dataset_in_use",
                "dataset 'tweets' is used by a queued or running job; cancel it first",
                None,
            ),
            _PATH_ERROR,
        ),
    },
)
async def delete_dataset(name: DatasetName, store: DatasetStoreDep, jobs: JobStoreDep) -> None:
    """Remove a dataset; refused (409) while a queued or running job uses it."""
    try:
        in_use = await asyncio.to_thread(jobs.datasets_in_use)
        await asyncio.to_thread(store.delete, name, in_use=in_use)
    except InvalidDataset:
        raise APIError(404, "dataset_not_found", f"no dataset named {name[:80]!r}", "name") from None
    except DatasetStoreError as exc:
        raise api_error(exc) from None
