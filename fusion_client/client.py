"""`Client`: the synchronous Python client of fusion-service, and the `Job` it returns from `train`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from fusion_client import calls
from fusion_client.calls import BatchItem, Call, ImageInput, T
from fusion_client.schemas import (
    ActiveModel,
    Dataset,
    Health,
    ItemError,
    JobEvent,
    JobInfo,
    ModelList,
    ModelVersion,
    Prediction,
)

# Server-Sent Events carry a keep-alive every 15 s: a read waits longer than that before giving up.
EVENTS_READ_TIMEOUT_S = 60.0


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Calls a fusion-service at `base_url`; every error answer raises `FusionAPIError`.

    A 503 with `Retry-After` (overloaded, shutting down) is retried up to `max_retries` times, waiting as
    told, unless the server asks for more than `max_retry_wait_s`. Use it as a context manager or
    `close()` it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        max_retries: int = 3,
        max_retry_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response = self._http.request(call.method, call.path, **call.request_args())
            delay = calls.retry_delay(response, attempt, self.max_retries, self.max_retry_wait_s)
            if delay is None:
                calls.raise_for_error(response)
                return call.parse(response)
            attempt += 1
            time.sleep(delay)

    def predict(self, image: ImageInput | None, text: str | None = None, explain: bool = False) -> Prediction:
        """Classify one image (path, bytes, file object or PIL image) with its text; `explain` adds the
        image-only and text-only predictions and the gate weights."""
        return self._call(calls.predict(image, text, explain))

    def predict_batch(
        self, items: Sequence[BatchItem], explain: bool = False
    ) -> list[Prediction | ItemError]:
        """Classify `(image, text)` pairs in one request; a failed item is an `ItemError` in its place."""
        return self._call(calls.predict_batch(items, explain))

    def upload_dataset(
        self, name: str, path: str | os.PathLike[str], *, skip_invalid: bool = False
    ) -> Dataset:
        """Upload a zip, or a folder (zipped on the fly into a temporary file), as dataset `name`."""
        with calls.dataset_archive(path) as archive:
            return self._call(calls.upload_dataset(name, archive, skip_invalid))

    def dataset(self, name: str) -> Dataset:
        """The summary of dataset `name`."""
        return self._call(calls.dataset(name))

    def train(
        self,
        dataset: str,
        params: Mapping[str, Any] | None = None,
        validation: str | float | None = None,
        test: str | None = None,
        cv: int | Mapping[str, Any] | None = None,
        promote: str = "if_better",
        *,
        skip_invalid: bool = False,
    ) -> Job:
        """Queue a training job on `dataset` (a name or `name:split`); returns the queued `Job`.

        `test`: a dataset reference measured once on the final model; `cv`: k-fold cross-validation first.
        """
        info = self._call(calls.train(dataset, params, validation, test, cv, promote, skip_invalid))
        return Job(self, info)

    def job(self, job_id: str) -> Job:
        """The job with id `job_id`."""
        return Job(self, self._call(calls.get_job(job_id)))

    def models(self) -> ModelList:
        """Every model version in the store and which one is active."""
        return self._call(calls.models())

    def active_model(self) -> ActiveModel:
        """The active model version."""
        return self._call(calls.active_model())

    def activate(self, version: str) -> ModelVersion:
        """Make `version` the active model (also the rollback); returns once it serves."""
        return self._call(calls.activate(version))

    def health(self) -> Health:
        """Whether the service is live and ready (ready: a model is loaded and serving)."""
        return calls.health(self._http.get("/health/live"), self._http.get("/health/ready"))

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Job:
    """A training job: `info` is the latest snapshot; `refresh`, `cancel`, follow `events` or `wait`."""

    def __init__(self, client: Client, info: JobInfo) -> None:
        self.client = client
        self.info = info

    @property
    def id(self) -> str:
        """The job id."""
        return self.info.id

    @property
    def status(self) -> str:
        """Status as of the latest snapshot: queued, running, succeeded, failed or cancelled."""
        return self.info.status

    def refresh(self) -> JobInfo:
        """Fetch the current snapshot."""
        self.info = self.client._call(calls.get_job(self.id))
        return self.info

    def cancel(self) -> JobInfo:
        """Cancel the job (a running one stops at its next step); `FusionAPIError` 409 once finished."""
        self.info = self.client._call(calls.cancel_job(self.id))
        return self.info

    def events(self) -> Iterator[JobEvent]:
        """Follow `GET /jobs/{id}/events`: one `JobEvent` per change, the last one's event is `end`."""
        timeout = httpx.Timeout(self.client._http.timeout.connect, read=EVENTS_READ_TIMEOUT_S)
        with self.client._http.stream("GET", f"/jobs/{self.id}/events", timeout=timeout) as response:
            if response.is_error:
                response.read()
                calls.raise_for_error(response)
            decoder = calls.EventDecoder()
            for line in response.iter_lines():
                event = decoder.feed(line)
                if event is not None:
                    self.info = event.job
                    yield event

    def wait(self, progress: bool = True) -> JobInfo:
        """Block until the job finishes (a tqdm bar fed by its events when `progress`); the final snapshot.

        A dropped event stream is reopened; check `status` for succeeded, failed or cancelled.
        """
        bar = calls.ProgressBar(self.id, progress)
        try:
            while not self.info.finished:
                for event in self.events():
                    bar.update(event.job)
                if not self.info.finished:  # the stream ended early (e.g. a proxy closed it)
                    bar.update(self.refresh())
        finally:
            bar.close()
        return self.info
