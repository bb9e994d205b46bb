"""A PostgreSQL job database that goes away and comes back, under a real `python -m service` and its worker.

While the database is away the job routes answer 503 `job_database_unavailable` with a Retry-After
(never a 500) and predictions go on; once it is back everything answers again without a restart. A job
training through the outage goes on (its progress writes are skipped) and succeeds; one that ends while
the database is away records its success once it is back (the worker waits, it does not die). The next
job runs. Skipped without PostgreSQL server binaries or psycopg.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.pg_cluster import PgServer
from fusion_testkit.processes import alive, free_port, stopped, wait_until
from fusion_testkit.service_process import (
    ServiceProcess,
    make_versions,
    place_demo_dataset,
    predict_files,
    stop_at_env,
)

pytestmark = pytest.mark.slow  # real servers and workers: 25-65 s a test on the 2-core machine

API_KEY = "pg-restart-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIMEOUT_S = 90.0
# Longer than the job database's wait for a connection (10 s), so that requests do meet the outage.
OUTAGE_S = 12.0
FINAL = ("succeeded", "failed", "cancelled")


@contextlib.contextmanager
def _api(root: Path, database: PgServer, **env: str) -> Iterator[tuple[httpx.Client, ServiceProcess]]:
    """The API (with its worker) keeping its jobs in `database`, and a client of it."""
    make_versions(root / "models", 1)
    place_demo_dataset(root / "data")
    settings = {
        "FUSION_API_KEY": API_KEY,
        "FUSION_JOB_DB_URL": database.url,
        "FUSION_START_WORKER": "true",
        "FUSION_WORKER_POLL_INTERVAL_S": "0.2",
        "FUSION_TORCH_THREADS": "1",
        "FUSION_RUNTIME": "torch",
        **env,
    }
    server = ServiceProcess(root, free_port(), settings)
    try:
        server.start()
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            yield client, server
    finally:
        server.kill_everything()


@pytest.fixture
def api(tmp_path: Path, postgres_server: PgServer, single_cpu: None) -> Iterator[httpx.Client]:
    """A client of the API, its jobs in `postgres_server`; server and worker on one CPU (see `single_cpu`)."""
    with _api(tmp_path, postgres_server) as (client, _server):
        yield client


def _queue(api: httpx.Client, epochs: int) -> str:
    body = {"dataset": "demo", "validation": "demo:dev", "params": {**TINY_JOB_PARAMS, "epochs": epochs}}
    response = api.post("/jobs", json={**body, "promote": "always"})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def _final(api: httpx.Client, job_id: str) -> dict[str, Any]:
    wait_until(f"job {job_id} final", lambda: _job(api, job_id)["status"] in FINAL, TIMEOUT_S)
    return _job(api, job_id)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "job_database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def _answers_again(api: httpx.Client) -> bool:
    return api.get("/jobs").status_code == 200


def test_job_routes_answer_503_while_the_database_is_away_and_recover_by_themselves(
    api: httpx.Client, postgres_server: PgServer
) -> None:
    done = _final(api, _queue(api, epochs=1))
    assert done["status"] == "succeeded"

    postgres_server.stop()
    try:
        _assert_unavailable(api.get("/jobs"))
        _assert_unavailable(api.get(f"/jobs/{done['id']}"))
        _assert_unavailable(api.post("/jobs", json={"dataset": "demo"}))
        assert api.post("/predict", files=predict_files(1)).status_code == 200
        assert api.get("/health/ready").status_code == 200
    finally:
        postgres_server.start()

    wait_until("GET /jobs answering again", lambda: _answers_again(api))
    assert [job["id"] for job in api.get("/jobs").json()["jobs"]] == [done["id"]]
    assert _final(api, _queue(api, epochs=1))["status"] == "succeeded"


def test_a_job_training_through_a_restart_succeeds_and_the_next_one_runs(
    api: httpx.Client, postgres_server: PgServer
) -> None:
    running = _queue(api, epochs=300)
    wait_until("job training", lambda: (_job(api, running)["progress"] or {}).get("stage") == "training")

    postgres_server.stop()
    try:
        time.sleep(OUTAGE_S)  # progress writes and cancel checks fail meanwhile; the training goes on
    finally:
        postgres_server.start()

    wait_until("GET /jobs answering again", lambda: _answers_again(api))
    job = _final(api, running)
    assert job["status"] == "succeeded" and job["promoted"], job
    assert len(job["history"]) == 300
    following = _final(api, _queue(api, epochs=1))
    assert following["status"] == "succeeded" and following["promoted"]


def test_a_job_ending_while_the_database_is_away_records_its_success_once_it_is_back(
    tmp_path: Path, postgres_server: PgServer, single_cpu: None
) -> None:
    with _api(
        tmp_path, postgres_server, **stop_at_env("service.runtime.job_store:JobStore.mark_succeeded")
    ) as (
        api,
        server,
    ):
        job_id = _queue(api, epochs=1)
        (worker,) = server.note_workers()
        wait_until("the worker about to record the success", lambda: stopped(worker))
        postgres_server.stop()
        try:
            os.kill(worker, signal.SIGCONT)
            time.sleep(OUTAGE_S)  # the write waits for the database
            assert alive(worker)
        finally:
            postgres_server.start()

        wait_until("GET /jobs answering again", lambda: _answers_again(api))
        job = _final(api, job_id)
        assert job["status"] == "succeeded" and job["promoted"], job
        assert server.note_workers() == [worker]  # the same worker: it waited instead of dying
