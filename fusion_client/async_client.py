"""`AsyncClient`: the asyncio twin of `Client`, and the `AsyncJob` it returns from `train`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from fusion_client import calls
from fusion_client.calls import BatchItem, Call, ImageInput, T
from fusion_client.client import EVENTS_READ_TIMEOUT_S, _headers
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


class AsyncClient:
    """The asyncio twin of `Client`: the same methods, awaited (`async with AsyncClient(url) as api:`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        max_retries: int = 3,
        max_retry_wait_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response = await self._http.request(call.method, call.path, **call.request_args())
            delay = calls.retry_delay(response, attempt, self.max_retries, self.max_retry_wait_s)
            if delay is None:
                calls.raise_for_error(response)
                return call.parse(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def predict(
        self, image: ImageInput | None, text: str | None = None, explain: bool = False
    ) -> Prediction:
        """See `Client.predict`."""
        return await self._call(calls.predict(image, text, explain))

    async def predict_batch(
        self, items: Sequence[BatchItem], explain: bool = False
    ) -> list[Prediction | ItemError]:
        """See `Client.predict_batch`."""
        return await self._call(calls.predict_batch(items, explain))

    async def upload_dataset(
        self, name: str, path: str | os.PathLike[str], *, skip_invalid: bool = False
    ) -> Dataset:
        """See `Client.upload_dataset` (the folder is zipped in a worker thread)."""
        context = calls.dataset_archive(path)
        archive = await asyncio.to_thread(context.__enter__)
        try:
            return await self._call(calls.upload_dataset(name, archive, skip_invalid))
        finally:
            context.__exit__(None, None, None)

    async def dataset(self, name: str) -> Dataset:
        """See `Client.dataset`."""
        return await self._call(calls.dataset(name))

    async def train(
        self,
        dataset: str,
        params: Mapping[str, Any] | None = None,
        validation: str | float | None = None,
        test: str | None = None,
        cv: int | Mapping[str, Any] | None = None,
        promote: str = "if_better",
        *,
        skip_invalid: bool = False,
    ) -> AsyncJob:
        """See `Client.train`."""
        info = await self._call(calls.train(dataset, params, validation, test, cv, promote, skip_invalid))
        return AsyncJob(self, info)

    async def job(self, job_id: str) -> AsyncJob:
        """See `Client.job`."""
        return AsyncJob(self, await self._call(calls.get_job(job_id)))

    async def models(self) -> ModelList:
        """See `Client.models`."""
        return await self._call(calls.models())

    async def active_model(self) -> ActiveModel:
        """See `Client.active_model`."""
        return await self._call(calls.active_model())

    async def activate(self, version: str) -> ModelVersion:
        """See `Client.activate`."""
        return await self._call(calls.activate(version))

    async def health(self) -> Health:
        """See `Client.health`."""
        return calls.health(await self._http.get("/health/live"), await self._http.get("/health/ready"))

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncJob:
    """The asyncio twin of `Job`."""

    def __init__(self, client: AsyncClient, info: JobInfo) -> None:
        self.client = client
        self.info = info

    @property
    def id(self) -> str:
        """The job id."""
        return self.info.id

    @property
    def status(self) -> str:
        """Status as of the latest snapshot."""
        return self.info.status

    async def refresh(self) -> JobInfo:
        """See `Job.refresh`."""
        self.info = await self.client._call(calls.get_job(self.id))
        return self.info

    async def cancel(self) -> JobInfo:
        """See `Job.cancel`."""
        self.info = await self.client._call(calls.cancel_job(self.id))
        return self.info

    async def events(self) -> AsyncIterator[JobEvent]:
        """See `Job.events`."""
        timeout = httpx.Timeout(self.client._http.timeout.connect, read=EVENTS_READ_TIMEOUT_S)
        async with self.client._http.stream("GET", f"/jobs/{self.id}/events", timeout=timeout) as response:
            if response.is_error:
                await response.aread()
                calls.raise_for_error(response)
            decoder = calls.EventDecoder()
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is not None:
                    self.info = event.job
                    yield event

    async def wait(self, progress: bool = True) -> JobInfo:
        """See `Job.wait`."""
        bar = calls.ProgressBar(self.id, progress)
        try:
            while not self.info.finished:
                async for event in self.events():
                    bar.update(event.job)
                if not self.info.finished:
                    bar.update(await self.refresh())
        finally:
            bar.close()
        return self.info
