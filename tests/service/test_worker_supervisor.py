"""WorkerSupervisor: the worker child process, its restarts after a crash, and its clean stop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.runtime.job_record import JobStatus
from service.runtime.job_store import JobStore
from service.runtime.worker_supervisor import WorkerSupervisor, child_env, describe_exit
from service.schemas.jobs import TrainParams
from service.settings import Settings

Params = dict[str, Any]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], demo_dataset: str, single_cpu: None) -> Settings:
    return make_settings(device="cpu", worker_poll_interval_s=0.1, api_key="never-leaks")


@pytest.fixture
def jobs(settings: Settings) -> JobStore:
    return JobStore(settings.data_dir / "jobs.sqlite3")


@pytest.fixture
def supervisor(settings: Settings, jobs: JobStore) -> Iterator[WorkerSupervisor]:
    supervisor = WorkerSupervisor(settings, jobs, restart_delay_s=0.1)
    supervisor.start()
    yield supervisor
    supervisor.stop()


def _queue(jobs: JobStore, params: Params) -> str:
    return jobs.create("demo", validation="demo:dev", params=TrainParams(**params).recorded()).id


def _wait_for_status(jobs: JobStore, job_id: str, status: JobStatus, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while (job := jobs.get(job_id)) is None or job.status is not status:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job and job.status}, not {status}")
        time.sleep(0.1)


def _start_long_job(jobs: JobStore, params: Params) -> str:
    """Queue a job too long to finish during the test and wait until the worker is running it."""
    job_id = _queue(jobs, {**params, "epochs": 500})
    _wait_for_status(jobs, job_id, JobStatus.RUNNING)
    return job_id


@pytest.mark.slow
def test_killed_worker_fails_its_job_and_its_replacement_runs_the_queue(
    supervisor: WorkerSupervisor, jobs: JobStore, tiny_job_params: Params
) -> None:
    running = _start_long_job(jobs, tiny_job_params)
    first_pid = supervisor.pid
    assert first_pid is not None

    os.kill(first_pid, signal.SIGKILL)
    _wait_for_status(jobs, running, JobStatus.FAILED)
    next_job = _queue(jobs, {**tiny_job_params, "epochs": 1})

    _wait_for_status(jobs, next_job, JobStatus.SUCCEEDED)
    failed = jobs.get(running)
    assert failed is not None and failed.error == "worker process exited with signal 9 (SIGKILL)"
    assert supervisor.restarts == 1 and supervisor.pid not in (None, first_pid)


@pytest.mark.slow
def test_stop_ends_the_child_and_puts_its_job_back_in_the_queue(
    supervisor: WorkerSupervisor, jobs: JobStore, tiny_job_params: Params
) -> None:
    running = _start_long_job(jobs, tiny_job_params)
    pid = supervisor.pid

    supervisor.stop()

    assert supervisor.pid is None and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    job = jobs.get(running)
    assert job is not None and job.status is JobStatus.QUEUED


@pytest.mark.slow
def test_app_started_with_a_worker_runs_queued_jobs_in_its_child(
    make_client: Callable[..., TestClient], demo_dataset: str, tiny_job_params: Params, single_cpu: None
) -> None:
    client = make_client(start_worker=True, device="cpu", worker_poll_interval_s=0.1)
    supervisor = client.app.state.worker_supervisor  # type: ignore[attr-defined]
    assert supervisor.pid is not None and supervisor.pid != os.getpid()

    body = {"dataset": demo_dataset, "params": {**tiny_job_params, "epochs": 1}}
    job = client.post("/jobs", json=body).json()

    deadline = time.monotonic() + 90
    while (status := client.get(f"/jobs/{job['id']}").json()["status"]) in ("queued", "running"):
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(0.1)
    assert status == "succeeded"


def test_child_environment_rebuilds_the_same_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(torch_threads=None, api_key="k3y", allowed_image_types="png,gif", max_wait_ms=2)
    monkeypatch.setenv("FUSION_TORCH_THREADS", "7")  # set here, unset in `settings`: must not leak through
    env = child_env(settings, dict(os.environ))
    for key in [k for k in os.environ if k.startswith("FUSION_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("FUSION_"):
            monkeypatch.setenv(key, value)

    rebuilt = Settings(_env_file=None)  # type: ignore[call-arg]

    assert rebuilt == settings


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (-9, "worker process exited with signal 9 (SIGKILL)"),
        (-15, "worker process exited with signal 15 (SIGTERM)"),
        (3, "worker process exited with code 3"),
    ],
)
def test_exit_statuses_are_described(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text
