"""Jobs with nproc > 1: training under torchrun, its stop, its output relay, its work folders."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from model.device import available_cpus
from service.runtime.job_record import JobStatus
from service.runtime.worker_supervisor import child_env
from service.worker.errors import JobError
from service.worker.loop import Worker
from service.worker.processes import run_training_processes
from tests.service.worker.running_jobs import (
    Params,
    job_processes,
    queue,
    run_in_thread,
    training_started,
    wait_for,
)


@pytest.mark.slow  # torchrun and two training processes start (10-20 s on a busy 2-core machine)
def test_job_with_nproc_2_trains_in_two_processes(
    worker: Worker, tiny_job_params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = queue(worker, {**tiny_job_params, "nproc": 2}, promote="if_better")
    # Every snapshot the worker records, not a sample of them: 3 tiny epochs can end between two polls.
    stages: set[str] = set()
    record = worker.jobs.update_progress

    def recording(job_id: str, progress: dict[str, Any], history: list[dict[str, Any]] | None = None) -> None:
        stages.add(progress["stage"])
        record(job_id, progress, history)

    monkeypatch.setattr(worker.jobs, "update_progress", recording)
    run_in_thread(worker).join()

    done = worker.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED, done and done.error
    assert "training" in stages  # relayed from rank 0 while the processes ran
    assert [entry["epoch"] for entry in done.history] == [1, 2, 3]
    assert [v.version for v in worker.models.list_versions()] == [done.model_version]
    assert done.promoted and worker.models.active_version() == done.model_version
    meta = worker.models.get(done.model_version or "").meta
    assert meta is not None and meta["extra"]["job_id"] == job.id and meta["train_config"]["nproc"] == 2
    assert list((worker.settings.data_dir / "cache" / "jobs").iterdir()) == []


@pytest.mark.slow  # torchrun and two training processes start
def test_cancel_stops_the_training_processes(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, {**tiny_job_params, "epochs": 500, "nproc": 2}, promote="always")
    thread = run_in_thread(worker)
    wait_for(training_started(worker, job.id))
    assert job_processes(job.id)

    worker.jobs.request_cancel(job.id)
    thread.join(60)

    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.model_version is None
    assert worker.models.list_versions() == []
    assert job_processes(job.id) == []


@pytest.mark.slow  # a worker process, torchrun and two training processes start
def test_killed_worker_takes_its_training_processes_along(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, {**tiny_job_params, "epochs": 500, "nproc": 2})
    # A worker process of its own, killed as the OOM killer or the API's supervisor kills one.
    env = child_env(worker.settings, dict(os.environ))
    process = subprocess.Popen([sys.executable, "-m", "service.worker"], env=env)
    try:
        wait_for(training_started(worker, job.id), timeout=120)
        assert job_processes(job.id)
    finally:
        process.kill()
        process.wait()

    try:
        wait_for(lambda: job_processes(job.id) == [], timeout=30)
    finally:  # should they outlive the worker after all, they must not train on after the test
        for pid in job_processes(job.id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_work_folders_of_jobs_not_running_are_removed_at_start(
    worker: Worker, tiny_job_params: Params
) -> None:
    running = queue(worker, tiny_job_params)
    assert worker.jobs.claim_next("elsewhere:1:a") is not None  # another host's, beating: left running
    failed = queue(worker, tiny_job_params)
    assert worker.jobs.claim_next("elsewhere:2:b") is not None
    worker.jobs.fail_worker_jobs("elsewhere:2:b", "worker process exited with signal 9 (SIGKILL)")
    folders = {job.id: worker.work_dir / f"{job.id}-k2x9q1" for job in (running, failed)}
    for folder in folders.values():
        (folder / "model").mkdir(parents=True)

    worker.stop()
    worker.run()  # starts, and stops at once

    assert folders[running.id].is_dir()
    assert not folders[failed.id].exists()


def test_more_processes_than_cpus_fail_the_job_before_any_starts(
    worker: Worker, tiny_job_params: Params
) -> None:
    nproc = available_cpus() + 1
    job = queue(worker, {**tiny_job_params, "nproc": nproc, "batch_size": 2 * nproc})

    done = worker.run_once()

    assert done is not None and done.id == job.id and done.status is JobStatus.FAILED
    assert (
        done.error == f"nproc: {nproc} training processes but this machine has only {available_cpus()} CPUs"
    )
    assert not worker.work_dir.exists()


# A byte that is not UTF-8, then more than a pipe holds (64 KiB): the reading must go on past the
# byte, or the process blocks on the full pipe.
_NOT_UTF8_OUTPUT = r"""
import sys
out = sys.stdout.buffer
out.write(b"\xff\xfe\n")
out.write((b"x" * 99 + b"\n") * 2000)
out.write(b"error: broken \xff\n")
sys.exit(3)
"""


def test_output_that_is_not_utf8_does_not_stop_the_relay() -> None:
    deadline = time.monotonic() + 30

    with pytest.raises(JobError, match=r"exit status 3\): error: broken \ufffd$"):
        run_training_processes(
            [sys.executable, "-c", _NOT_UTF8_OUTPUT],
            "job",
            lambda progress: None,
            lambda: time.monotonic() > deadline,
        )
