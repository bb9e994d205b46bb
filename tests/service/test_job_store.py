"""JobStore: the SQLite queue, claims, progress, cancellation, dead workers, restarts."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from service.runtime.job_store import JobStatus, JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


def test_new_job_is_queued_with_its_request(store: JobStore) -> None:
    job = store.create("demo", validation="demo:dev", params={"epochs": 3}, promote="always")

    fetched = store.get(job.id)
    assert fetched == job
    assert (job.status, job.dataset, job.validation, job.params, job.promote) == (
        JobStatus.QUEUED,
        "demo",
        "demo:dev",
        {"epochs": 3},
        "always",
    )
    assert job.started_at is None and job.history == [] and not job.promoted


def test_skip_invalid_is_stored_with_the_job(store: JobStore) -> None:
    assert not store.create("demo").skip_invalid
    job = store.create("demo", skip_invalid=True)

    fetched = store.get(job.id)
    assert fetched is not None and fetched.skip_invalid


def test_a_database_from_before_skip_invalid_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,"
            " dataset TEXT NOT NULL, validation TEXT, params TEXT NOT NULL, promote TEXT NOT NULL,"
            " created_at REAL NOT NULL, started_at REAL, finished_at REAL, progress TEXT,"
            " history TEXT NOT NULL DEFAULT '[]', metrics TEXT, model_version TEXT,"
            " promoted INTEGER NOT NULL DEFAULT 0, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,"
            " worker_id TEXT, heartbeat_at REAL)"
        )
        conn.execute(
            "INSERT INTO jobs (id, seq, status, dataset, params, promote, created_at)"
            " VALUES ('old', 1, 'queued', 'demo', '{}', 'never', 0)"
        )
    conn.close()

    store = JobStore(path)

    old = store.get("old")
    assert old is not None and not old.skip_invalid
    assert store.create("demo", skip_invalid=True).skip_invalid


def test_fraction_validation_round_trips_as_a_number(store: JobStore) -> None:
    assert store.create("demo", validation=0.25).validation == 0.25


def test_database_uses_wal(store: JobStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claims_follow_queue_order_one_job_each(store: JobStore) -> None:
    first, second = store.create("a"), store.create("b")

    claimed = store.claim_next("w1")
    assert claimed is not None and claimed.id == first.id
    assert claimed.status is JobStatus.RUNNING and claimed.worker_id == "w1" and claimed.started_at
    next_claim = store.claim_next("w2")
    assert next_claim is not None and next_claim.id == second.id
    assert store.claim_next("w3") is None


def test_concurrent_claims_never_share_a_job(store: JobStore) -> None:
    ids = {store.create(f"d{i}").id for i in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while (job := store.claim_next(f"w{n}")) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(claimed) == sorted(ids)


def test_queue_position_counts_from_the_oldest(store: JobStore) -> None:
    first, second = store.create("a"), store.create("b")

    assert store.queue_position(first.id) == 1
    assert store.queue_position(second.id) == 2
    store.claim_next("w")
    assert store.queue_position(first.id) is None
    assert store.queue_position(second.id) == 1


def test_progress_and_history_are_recorded_with_a_heartbeat(store: JobStore) -> None:
    job = store.create("a")
    claimed = store.claim_next("w")
    assert claimed is not None and claimed.heartbeat_at is not None

    store.update_progress(job.id, {"stage": "training", "epoch": 1}, [{"epoch": 1, "loss": 0.5}])

    updated = store.get(job.id)
    assert updated is not None
    assert updated.progress == {"stage": "training", "epoch": 1}
    assert updated.history == [{"epoch": 1, "loss": 0.5}]
    assert updated.heartbeat_at is not None and updated.heartbeat_at >= claimed.heartbeat_at


def test_cancelling_a_queued_job_is_immediate(store: JobStore) -> None:
    job = store.create("a")

    cancelled = store.request_cancel(job.id)

    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED and cancelled.finished_at
    assert store.claim_next("w") is None


def test_cancelling_a_running_job_flags_it_for_the_worker(store: JobStore) -> None:
    job = store.create("a")
    store.claim_next("w")

    flagged = store.request_cancel(job.id)

    assert flagged is not None and flagged.status is JobStatus.RUNNING
    assert store.cancel_requested(job.id)
    assert store.mark_cancelled(job.id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED


def test_finished_jobs_cannot_change_state(store: JobStore) -> None:
    job = store.create("a")
    store.claim_next("w")
    assert store.mark_succeeded(job.id, metrics={"m": 1}, history=[], model_version="v1", promoted=True)

    assert not store.mark_failed(job.id, "late failure")
    store.request_cancel(job.id)
    final = store.get(job.id)
    assert final is not None
    assert (final.status, final.model_version, final.promoted, final.error) == (
        JobStatus.SUCCEEDED,
        "v1",
        True,
        None,
    )


def test_dead_workers_jobs_fail_with_the_reason_and_the_queue_survives(store: JobStore) -> None:
    running, other, queued = store.create("a"), store.create("b"), store.create("c")
    store.claim_next("dead")
    store.claim_next("alive")

    failed = store.fail_worker_jobs("dead", "worker process exited with signal 9 (SIGKILL)")

    assert failed == [running.id]
    dead_job, alive_job, waiting = store.get(running.id), store.get(other.id), store.get(queued.id)
    assert dead_job is not None and dead_job.status is JobStatus.FAILED
    assert dead_job.error == "worker process exited with signal 9 (SIGKILL)"
    assert alive_job is not None and alive_job.status is JobStatus.RUNNING
    assert waiting is not None and waiting.status is JobStatus.QUEUED


def test_requeued_job_runs_again_first(store: JobStore) -> None:
    job = store.create("a")
    store.create("b")
    store.claim_next("w")
    store.update_progress(job.id, {"stage": "training"}, [{"epoch": 1}])

    assert store.requeue(job.id)

    again = store.claim_next("w2")
    assert again is not None and again.id == job.id and again.history == [] and again.progress is None


def test_counts_and_datasets_in_use(store: JobStore) -> None:
    store.create("a", validation="v:dev")
    finished = store.create("old")
    store.request_cancel(finished.id)
    store.create("b", validation=0.2)

    assert store.count_by_status() == {
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert store.datasets_in_use() == {"a", "v", "b"}
    assert [job.dataset for job in store.list_jobs(JobStatus.QUEUED)] == ["b", "a"]


def test_records_survive_reopening_the_file(store: JobStore) -> None:
    job = store.create("a", params={"seed": 3})
    store.claim_next("w")

    reopened = JobStore(store.path)

    again = reopened.get(job.id)
    assert again is not None and again.status is JobStatus.RUNNING and again.params == {"seed": 3}
