"""Training jobs: queue one, follow it (JSON, Server-Sent Events, a PNG report), cancel it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from service.deps import DatasetStoreDep, JobStoreDep, SettingsDep
from service.errors import APIError
from service.reports import render_job_report
from service.runtime.dataset_store import DatasetInfo, DatasetStore, DatasetStoreError
from service.runtime.job_db import JobDatabaseUnavailable
from service.runtime.job_record import Job, JobStatus
from service.runtime.job_store import JobStore
from service.schemas import examples
from service.schemas.common import (
    INSUFFICIENT_STORAGE,
    JOB_DATABASE_UNAVAILABLE,
    UNAUTHORIZED,
    ErrorDoc,
    error_responses,
    example_response,
)
from service.schemas.jobs import JobCreate, JobList, JobPublic
from service.security import RequireKey

# Every job route reads the job database: with PostgreSQL away, each answers 503 with a Retry-After.
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=error_responses(JOB_DATABASE_UNAVAILABLE))

JobId = Annotated[
    str,
    Path(
        description="A job id as returned by `POST /jobs`",
        max_length=64,
        openapi_examples={"a job": {"value": examples.JOB_ID}},
    ),
]
_NOT_FOUND: ErrorDoc = (404, "job_not_found", f"no job with id {examples.JOB_ID!r}", "job_id")
_BAD_ID: ErrorDoc = (422, "validation_error", "job_id: String should have at most 64 characters", "job_id")
# How often the event stream looks at the job row, and how long it stays silent before a keep-alive.
EVENT_POLL_S = 0.5
KEEPALIVE_S = 15.0


def _public(store: JobStore, job: Job) -> JobPublic:
    position = store.queue_position(job.id) if job.status is JobStatus.QUEUED else None
    return JobPublic.from_job(job, queue_position=position)


def _get(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise APIError(404, "job_not_found", f"no job with id {job_id[:64]!r}", "job_id")
    return job


def _split_info(
    datasets: DatasetStore, ref: str, field: str, *, skip_invalid: bool
) -> tuple[DatasetInfo, str | None]:
    """The dataset summary and split a reference names, or a 422 naming the request field.

    A split with invalid rows is refused unless `skip_invalid`.
    """
    try:
        path, split = datasets.resolve(ref)
        info = datasets.info(path.name)
    except DatasetStoreError as exc:
        raise APIError(422, "unknown_dataset", f"{field}: {exc.message}", field) from None
    loaded = info.split(split)
    if loaded is None:
        which = f"split {split!r}" if split else "the default split"
        detail = f": {info.error}" if info.error else ""
        raise APIError(
            422, "invalid_dataset", f"{field}: {which} of {info.name!r} does not load{detail}", field
        )
    if loaded.skipped and not skip_invalid:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in loaded.problem_counts.items())
        raise APIError(
            422,
            "invalid_dataset",
            f"{field}: {ref} has {loaded.skipped} invalid rows ({kinds}); set skip_invalid to drop them",
            field,
        )
    return info, split


def _check_request(body: JobCreate, datasets: DatasetStore, device: str) -> None:
    """Everything that can be checked before queueing: datasets, split labels, cv, the recipe itself."""
    info, split = _split_info(datasets, body.dataset, "dataset", skip_invalid=body.skip_invalid)
    train_split = info.split(split)
    assert train_split is not None
    labels = [label for label, count in train_split.label_counts.items() if count > 0]
    if len(labels) < 2:
        raise APIError(422, "invalid_dataset", "dataset: needs at least two labels with samples", "dataset")
    for field, ref in (("validation", body.validation), ("test", body.test)):
        if isinstance(ref, str):
            _check_labels(datasets, ref, field, labels, skip_invalid=body.skip_invalid)
    if body.cv is not None:
        if isinstance(body.validation, str):
            raise APIError(
                422,
                "validation_error",
                "validation: with cv each fold holds out its own early-stopping slice; give a fraction or"
                " nothing",
                "validation",
            )
        samples = sum(train_split.label_counts.values())
        if body.cv.folds > samples:
            raise APIError(
                422,
                "validation_error",
                f"cv.folds: {body.cv.folds} folds need at least as many samples; the dataset has {samples}",
                "cv.folds",
            )
        if body.params.nproc > 1:
            raise APIError(
                422,
                "validation_error",
                "params.nproc: cross-validation trains in one process",
                "params.nproc",
            )
    fraction = body.validation if isinstance(body.validation, float) else None
    try:
        body.params.configs(labels, device=device, val_fraction=fraction)
    except ValueError as exc:
        field, _, _problem = str(exc).partition(":")
        raise APIError(422, "validation_error", f"params.{exc}", f"params.{field.strip()}") from None


def _check_labels(
    datasets: DatasetStore, ref: str, field: str, labels: list[str], *, skip_invalid: bool
) -> None:
    """A 422 naming `field` unless the split `ref` loads and its labels are all among `labels`."""
    info, split = _split_info(datasets, ref, field, skip_invalid=skip_invalid)
    loaded = info.split(split)
    assert loaded is not None
    unknown = sorted(label for label, count in loaded.label_counts.items() if count and label not in labels)
    if unknown:
        raise APIError(
            422,
            "unknown_label",
            f"{field}: labels not in the training set: {', '.join(map(repr, unknown[:10]))}",
            field,
        )


@router.post(
    "",
    status_code=202,
    summary="Queue a training job",
    dependencies=[RequireKey],
    responses={
        202: example_response(examples.JOB_QUEUED, "The queued job; `Location` names it"),
        **error_responses(
            (400, "invalid_json", "body is not valid JSON: Expecting ',' delimiter", None),
            UNAUTHORIZED,
            (422, "unknown_dataset", "dataset: no dataset named 'tweets'", "dataset"),
            (422, "invalid_dataset", "dataset: needs at least two labels with samples", "dataset"),
            (422, "unknown_label", "validation: labels not in the training set: 'neutral'", "validation"),
            (
                422,
                "validation_error",
                "params.epochs: Input should be less than or equal to 500",
                "params.epochs",
            ),
            INSUFFICIENT_STORAGE,
        ),
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"example": examples.JOB_REQUEST}}}},
)
async def create_job(
    body: JobCreate, response: Response, jobs: JobStoreDep, datasets: DatasetStoreDep, settings: SettingsDep
) -> JobPublic:
    """Queue a training run on a dataset; the worker process picks it up (one job at a time per worker).

    `validation` is another dataset (its labels must be training labels) or a fraction to hold out; it
    only chooses the epoch. `test` is measured on the final model and reported apart. `cv` runs k-fold
    cross-validation first, then trains one model on all the data. `promote`: `never`, `always`, or
    `if_better` (default): the new version goes live only when its validation metric (with `cv`: the mean
    over the held-out folds) beats the active model's, or when no model is active.
    """
    await asyncio.to_thread(_check_request, body, datasets, settings.device)
    job = await asyncio.to_thread(
        jobs.create,
        body.dataset,
        validation=body.validation,
        params=body.params.recorded(),
        promote=body.promote,
        skip_invalid=body.skip_invalid,
        test=body.test,
        cv=None if body.cv is None else body.cv.model_dump(),
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    return await asyncio.to_thread(_public, jobs, job)


@router.get(
    "",
    summary="List jobs",
    responses={
        200: example_response(examples.JOB_LIST),
        **error_responses(
            (422, "validation_error", "limit: Input should be less than or equal to 1000", "limit")
        ),
    },
)
async def list_jobs(
    jobs: JobStoreDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobList:
    """Jobs newest first (the queue is the `queued` ones, `queue_position` 1 runs next)."""

    def build() -> JobList:
        rows = jobs.list_jobs(status, limit=limit, offset=offset)
        return JobList(jobs=[_public(jobs, job) for job in rows], counts=jobs.count_by_status())

    return await asyncio.to_thread(build)


@router.get(
    "/{job_id}",
    summary="Show a job",
    responses={200: example_response(examples.JOB), **error_responses(_NOT_FOUND, _BAD_ID)},
)
async def get_job(job_id: JobId, jobs: JobStoreDep) -> JobPublic:
    """Status, progress (stage, epoch, step, loss, ETA), per-epoch history, metrics, model version, error."""
    job = await asyncio.to_thread(_get, jobs, job_id)
    return await asyncio.to_thread(_public, jobs, job)


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job",
    dependencies=[RequireKey],
    responses={
        200: example_response(examples.JOB_CANCELLING, "The job, `cancel_requested` (or already cancelled)"),
        **error_responses(
            UNAUTHORIZED,
            _NOT_FOUND,
            (409, "job_finished", f"job {examples.JOB_ID} already succeeded", "job_id"),
            _BAD_ID,
            INSUFFICIENT_STORAGE,
        ),
    },
)
async def cancel_job(job_id: JobId, jobs: JobStoreDep) -> JobPublic:
    """A queued job is cancelled at once, a running one at its next step; its partial model is discarded
    and the active model is left untouched."""
    job = await asyncio.to_thread(_get, jobs, job_id)
    if job.finished:
        raise APIError(409, "job_finished", f"job {job.id} already {job.status.value}", "job_id")
    cancelled = await asyncio.to_thread(jobs.request_cancel, job.id)
    assert cancelled is not None
    return await asyncio.to_thread(_public, jobs, cancelled)


async def _events(request: Request, jobs: JobStore, job_id: str) -> AsyncIterator[str]:
    """A `progress` event whenever the job changes, a final `end` event, keep-alive comments between."""
    last = ""
    last_sent = time.monotonic()
    while True:
        try:
            job = await asyncio.to_thread(jobs.get, job_id)
            payload = "" if job is None else (await asyncio.to_thread(_public, jobs, job)).model_dump_json()
        except JobDatabaseUnavailable:  # the stream waits for the database to answer again
            yield ": job database unavailable, retrying\n\n"
            last_sent = time.monotonic()
            await asyncio.sleep(EVENT_POLL_S)
            continue
        if job is None:
            return
        if payload != last:
            yield f"event: {'end' if job.finished else 'progress'}\ndata: {payload}\n\n"
            last, last_sent = payload, time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if job.finished or await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_POLL_S)


@router.get(
    "/{job_id}/events",
    summary="Follow a job (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: `progress` events carrying the job as JSON, then one `end`"
            " event with the finished job",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": examples.JOB_EVENTS}},
        },
        **error_responses(_NOT_FOUND, _BAD_ID),
    },
)
async def job_events(job_id: JobId, request: Request, jobs: JobStoreDep) -> StreamingResponse:
    """Stream the job's snapshots until it succeeds, fails or is cancelled (e.g. `curl -N`)."""
    job = await asyncio.to_thread(_get, jobs, job_id)
    return StreamingResponse(
        _events(request, jobs, job.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/{job_id}/report.png",
    summary="Plot a job's curves and confusion matrix",
    response_class=Response,
    responses={
        200: {
            "description": "a PNG image",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(
            _NOT_FOUND,
            (409, "no_report", f"job {examples.JOB_ID} is queued and has no finished epoch yet", None),
            _BAD_ID,
        ),
    },
)
async def job_report(job_id: JobId, jobs: JobStoreDep) -> Response:
    """Loss and validation-metric curves per epoch and the validation confusion matrix, as a PNG."""
    job = await asyncio.to_thread(_get, jobs, job_id)
    if not job.history and not job.metrics:
        raise APIError(409, "no_report", f"job {job.id} is {job.status.value} and has no finished epoch yet")
    png = await asyncio.to_thread(render_job_report, job)
    return Response(content=png, media_type="image/png")
