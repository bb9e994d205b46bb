"""JobStore on SQLite and on PostgreSQL: the queue, claims, progress, cancellation, dead workers, restarts."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusion_testkit.factories import SettingsFactory
from service.runtime.job_db import JobDatabaseError, PostgresDatabase, SqliteDatabase, open_job_database
from service.runtime.job_record import JobStatus
from service.runtime.job_store import JobStore

StoreOpener = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opens stores (as separate processes or replicas would) on one fresh job database of each backend."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_job_db_url")
    opened: list[JobStore] = []

    def open_store() -> JobStore:
        opened.append(JobStore(open_job_database(url, tmp_path / "jobs.sqlite3")))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreOpener) -> JobStore:
    return open_store()


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


def test_test_split_and_cv_are_stored_with_the_job(store: JobStore) -> None:
    job = store.create("demo", test="other:test", cv={"folds": 3})
    fetched = store.get(job.id)
    assert fetched is not None and (fetched.test, fetched.cv) == ("other:test", {"folds": 3})
    assert fetched.dataset_names == {"demo", "other"}


def test_a_database_from_before_skip_invalid_test_and_cv_gains_the_columns(tmp_path: Path) -> None:
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

    try:
        old = store.get("old")
        assert old is not None and not old.skip_invalid and old.test is None and old.cv is None
        assert store.create("demo", skip_invalid=True).skip_invalid
        new = store.create("demo", test="demo:dev", cv={"folds": 5})
        assert (new.test, new.cv) == ("demo:dev", {"folds": 5})
    finally:
        store.close()


def test_a_database_whose_schema_cannot_be_created_is_closed_again(tmp_path: Path) -> None:
    path = tmp_path / "foreign.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE jobs (id TEXT)")  # someone else's jobs table: the index cannot be made
    database = SqliteDatabase(path)

    with pytest.raises(sqlite3.OperationalError, match="status"):
        JobStore(database)

    # The WAL file goes away only once the last connection, the database's idle one included, is closed.
    assert not (tmp_path / "foreign.sqlite3-wal").exists()


def test_fraction_validation_round_trips_as_a_number(store: JobStore) -> None:
    assert store.create("demo", validation=0.25).validation == 0.25


def test_sqlite_database_uses_wal(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")

    try:
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_sqlite_writes_leave_the_wal_for_the_next_checkpoint(tmp_path: Path) -> None:
    # Without the store's idle connection each write's connection would be the last to close, and SQLite
    # would checkpoint (fsync, remove the WAL) every time.
    store = JobStore(tmp_path / "jobs.sqlite3")

    try:
        store.create("a")

        assert (tmp_path / "jobs.sqlite3-wal").stat().st_size > 0
    finally:
        store.close()
    assert not (tmp_path / "jobs.sqlite3-wal").exists()


def test_claims_follow_queue_order_one_job_each(store: JobStore) -> None:
    first, second = store.create("a"), store.create("b")

    claimed = store.claim_next("w1")
    assert claimed is not None and claimed.id == first.id
    assert claimed.status is JobStatus.RUNNING and claimed.worker_id == "w1" and claimed.started_at
    next_claim = store.claim_next("w2")
    assert next_claim is not None and next_claim.id == second.id
    assert store.claim_next("w3") is None


def _in_threads(target: Callable[[int], None], n: int) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_claims_never_share_a_job(store: JobStore, open_store: StoreOpener) -> None:
    ids = {store.create(f"d{i}").id for i in range(12)}
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        own_store = open_store()  # one connection (pool) per worker, as separate processes would have
        while (job := own_store.claim_next(f"w{n}")) is not None:
            with lock:
                claimed.setdefault(job.id, []).append(f"w{n}")

    _in_threads(worker, 4)

    assert sorted(claimed) == sorted(ids)
    assert all(len(claimers) == 1 for claimers in claimed.values())
    assert {job_id: store.get(job_id).worker_id for job_id in ids} == {  # type: ignore[union-attr]
        job_id: claimers[0] for job_id, claimers in claimed.items()
    }


def test_concurrent_creates_take_distinct_queue_places(store: JobStore, open_store: StoreOpener) -> None:
    created: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        own_store = open_store()
        for i in range(5):
            job = own_store.create(f"c{n}-{i}")
            with lock:
                created.append(job.id)

    _in_threads(client, 4)

    positions = sorted(store.queue_position(job_id) or 0 for job_id in created)
    assert positions == list(range(1, len(created) + 1))


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
    assert store.mark_cancelled(job.id, worker_id="w")
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED


def test_finished_jobs_cannot_change_state(store: JobStore) -> None:
    job = store.create("a")
    store.claim_next("w")
    assert store.mark_succeeded(
        job.id, worker_id="w", metrics={"m": 1}, history=[], model_version="v1", promoted=True
    )

    assert not store.mark_failed(job.id, "late failure", worker_id="w")
    store.request_cancel(job.id)
    final = store.get(job.id)
    assert final is not None
    assert (final.status, final.model_version, final.promoted, final.error) == (
        JobStatus.SUCCEEDED,
        "v1",
        True,
        None,
    )


def test_only_the_claiming_worker_can_finish_requeue_or_beat_a_job(store: JobStore) -> None:
    job = store.create("a")
    store.claim_next("w1")

    assert not store.heartbeat(job.id, "w2")
    assert not store.mark_succeeded(
        job.id, worker_id="w2", metrics={}, history=[], model_version="v2", promoted=False
    )
    assert not store.mark_failed(job.id, "not mine", worker_id="w2")
    assert not store.mark_cancelled(job.id, worker_id="w2")
    assert not store.requeue(job.id, worker_id="w2")
    running = store.get(job.id)
    assert running is not None and running.status is JobStatus.RUNNING and running.runs_on("w1")
    assert store.heartbeat(job.id, "w1")


def test_a_job_declared_dead_cannot_be_finished_by_its_old_worker(store: JobStore) -> None:
    job = store.create("a")
    store.claim_next("w1")
    store.fail_worker_jobs("w1", "worker w1 stopped sending heartbeats 61 s ago")

    assert not store.heartbeat(job.id, "w1")
    assert not store.mark_succeeded(
        job.id, worker_id="w1", metrics={}, history=[], model_version="v1", promoted=True
    )
    failed = store.get(job.id)
    assert failed is not None and not failed.runs_on("w1")
    assert (failed.status, failed.model_version, failed.promoted) == (JobStatus.FAILED, None, False)


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

    assert store.requeue(job.id, worker_id="w")

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


def test_records_survive_reopening_the_database(store: JobStore, open_store: StoreOpener) -> None:
    job = store.create("a", params={"seed": 3})
    store.claim_next("w")

    reopened = open_store()

    again = reopened.get(job.id)
    assert again is not None and again.status is JobStatus.RUNNING and again.params == {"seed": 3}


def test_settings_without_a_url_keep_jobs_in_the_data_dir(make_settings: SettingsFactory) -> None:
    settings = make_settings(job_db_url="")

    store = JobStore.from_settings(settings)

    try:
        assert isinstance(store.database, SqliteDatabase)
        assert store.path == settings.data_dir / "jobs.sqlite3" and store.path.is_file()
    finally:
        store.close()


def test_settings_with_a_postgres_url_share_one_database(
    make_settings: SettingsFactory, postgres_job_db_url: str
) -> None:
    api = JobStore.from_settings(make_settings(job_db_url=postgres_job_db_url))
    worker = JobStore.from_settings(make_settings(job_db_url=postgres_job_db_url))
    try:
        job = api.create("demo")

        assert isinstance(api.database, PostgresDatabase)
        claimed = worker.claim_next("w")
        assert claimed is not None and claimed.id == job.id
        assert not (make_settings().data_dir / "jobs.sqlite3").exists()
    finally:
        api.close()
        worker.close()


def test_unreachable_postgres_fails_in_one_line_naming_the_setting_without_the_password(
    make_settings: SettingsFactory,
) -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as closed:  # bound, never listening: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        settings = make_settings(job_db_url=f"postgresql://fusion:s3cret@127.0.0.1:{port}/jobs")

        with pytest.raises(JobDatabaseError) as raised:
            JobStore.from_settings(settings)

    message = str(raised.value)
    assert "FUSION_JOB_DB_URL=postgresql://fusion:***@127.0.0.1" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_url_that_is_not_postgres_is_rejected(make_settings: SettingsFactory) -> None:
    with pytest.raises(JobDatabaseError, match="FUSION_JOB_DB_URL=mysql://u:\\*\\*\\*@db/jobs is not"):
        JobStore.from_settings(make_settings(job_db_url="mysql://u:pw@db/jobs"))
