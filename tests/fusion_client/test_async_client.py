"""`fusion_client.AsyncClient`: the same calls, awaited, against a real uvicorn and a real worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fusion_client import AsyncClient, FusionAPIError, ItemError, Prediction
from fusion_testkit.factories import make_jpeg
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.live_server import KEY, LiveService
from model.demo_data import write_demo_dataset

TINY = {**TINY_JOB_PARAMS, "epochs": 3}


def test_predict_batch_and_health(service: LiveService) -> None:
    async def calls() -> None:
        async with AsyncClient(service.url, api_key=KEY) as api:
            one, batch, health = await asyncio.gather(
                api.predict(make_jpeg(), "hello", explain=True),
                api.predict_batch([(make_jpeg(), "a"), (b"junk", "b")]),
                api.health(),
            )
            assert isinstance(one, Prediction) and one.text_only is not None
            assert [type(item) for item in batch] == [Prediction, ItemError]
            assert health.ready and health.model_version == service.first_version
            with pytest.raises(FusionAPIError) as error:
                await api.activate("missing")
            assert error.value.code == "unknown_version"

    asyncio.run(calls())


def test_upload_a_folder_train_and_wait(service: LiveService, tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo-src", n_per_class=12)

    async def calls() -> None:
        async with AsyncClient(service.url, api_key=KEY) as api:
            dataset = await api.upload_dataset("demo", root)
            assert dataset.label_counts == {"negative": 12, "positive": 12}
            job = await api.train("demo", params=TINY, validation="demo:dev", promote="always")
            worker = service.run_worker_once()
            events = [event async for event in job.events()]
            await asyncio.to_thread(worker.join, 60)
            assert events[-1].event == "end" and events[-1].job.status == "succeeded"
            assert (await job.wait(progress=False)).model_version == (await api.active_model()).version
            assert (await job.refresh()).promoted

    asyncio.run(calls())
