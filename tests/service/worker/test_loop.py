"""The claim loop: cancel and stop while a job runs, and the jobs of workers that died."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

from service.runtime.job_record import JobStatus
from service.worker.identity import STALE_AFTER_S, make_worker_id
from service.worker.loop import Worker
from tests.service.worker.running_jobs import (
    Params,
    queue,
    run_in_thread,
    training_started,
    version_with_metric,
    wait_for,
)


def test_cancel_while_running_discards_the_model(worker: Worker, tiny_job_params: Params) -> None:
    active = version_with_metric(worker.models, 0.0)
    job = queue(worker, {**tiny_job_params, "epochs": 500}, promote="always")
    thread = run_in_thread(worker)
    wait_for(training_started(worker, job.id))

    worker.jobs.request_cancel(job.id)
    thread.join(60)

    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.model_version is None
    assert [v.version for v in worker.models.list_versions()] == [active]
    assert worker.models.active_version() == active


def test_stopping_the_worker_puts_its_job_back_in_the_queue(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, {**tiny_job_params, "epochs": 500})
    thread = run_in_thread(worker)
    wait_for(training_started(worker, job.id))

    worker.stop()
    thread.join(60)

    again = worker.jobs.get(job.id)
    assert again is not None and again.status is JobStatus.QUEUED and again.started_at is None
    assert worker.models.list_versions() == []


def test_running_job_of_a_dead_worker_fails_and_the_queue_still_runs(
    worker: Worker, tiny_job_params: Params
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = queue(worker, tiny_job_params)
    worker.jobs.claim_next(make_worker_id(dead.pid, "gone"))
    waiting = queue(worker, {**tiny_job_params, "epochs": 1})

    assert worker.recover() == [orphan.id]

    failed = worker.jobs.get(orphan.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and "died" in failed.error
    done = worker.run_once()
    assert done is not None and done.id == waiting.id and done.status is JobStatus.SUCCEEDED


def test_job_of_a_live_worker_is_left_running(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, tiny_job_params)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker.jobs.claim_next(make_worker_id(alive.pid, "busy"))

        assert worker.recover() == []
        running = worker.jobs.get(job.id)
        assert running is not None and running.status is JobStatus.RUNNING
    finally:
        alive.kill()
        alive.wait()


def test_silent_worker_on_another_host_is_declared_dead(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, tiny_job_params)
    worker.jobs.claim_next("elsewhere:123:token")
    with sqlite3.connect(worker.jobs.path) as conn:
        silent_since = time.time() - STALE_AFTER_S - 5
        conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (silent_since, job.id))

    assert worker.recover() == [job.id]
    failed = worker.jobs.get(job.id)
    assert failed is not None and failed.error is not None and "heartbeats" in failed.error


def test_job_declared_dead_while_training_stops_and_promotes_nothing(
    worker: Worker, tiny_job_params: Params
) -> None:
    active = version_with_metric(worker.models, 0.0)
    job = queue(worker, {**tiny_job_params, "epochs": 500}, promote="always")
    thread = run_in_thread(worker)
    wait_for(training_started(worker, job.id))

    # What another worker's recover() does once this one has been silent for STALE_AFTER_S.
    assert worker.jobs.fail_worker_jobs(worker.worker_id, "stopped sending heartbeats") == [job.id]
    thread.join(60)

    assert not thread.is_alive()
    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED and final.model_version is None
    assert final.error == "stopped sending heartbeats"
    assert [v.version for v in worker.models.list_versions()] == [active]
    assert worker.models.active_version() == active


def test_at_its_start_the_worker_removes_what_killed_writes_left(worker: Worker) -> None:
    active = version_with_metric(worker.models, 0.0)
    shard = worker.cache_dir / "image-efficientnet"
    shard.mkdir(parents=True)
    (shard / "0.safetensors").write_bytes(b"complete shard")
    leftovers = [
        shard / ".1.safetensors.0123abcd.tmp",
        worker.models.versions_dir / active / ".model.onnx.4567cdef.tmp",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half")  # written, then the writer was killed: nobody holds its lock
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: not any(leftover.exists() for leftover in leftovers))
    finally:
        worker.stop()
        thread.join(60)
    assert (shard / "0.safetensors").read_bytes() == b"complete shard"
    assert worker.models.active_version() == active
