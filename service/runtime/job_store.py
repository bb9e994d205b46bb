"""Training-job records in SQLite (WAL), shared by the API process and the worker processes."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class JobStatus(StrEnum):
    """Lifecycle of a job: queued -> running -> one of the three final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    dataset TEXT NOT NULL,
    validation TEXT,
    params TEXT NOT NULL,
    promote TEXT NOT NULL,
    skip_invalid INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress TEXT,
    history TEXT NOT NULL DEFAULT '[]',
    metrics TEXT,
    model_version TEXT,
    promoted INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    heartbeat_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
"""
# Columns added after the first release, added to older job databases on open.
_ADDED_COLUMNS = {"skip_invalid": "INTEGER NOT NULL DEFAULT 0"}


@dataclass(frozen=True)
class Job:
    """One row of the jobs table, JSON columns decoded."""

    id: str
    status: JobStatus
    dataset: str
    validation: str | float | None
    params: dict[str, Any]
    promote: str
    skip_invalid: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: dict[str, Any] | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    model_version: str | None
    promoted: bool
    error: str | None
    cancel_requested: bool
    worker_id: str | None
    heartbeat_at: float | None

    @property
    def finished(self) -> bool:
        """True once the job reached a final state."""
        return self.status in FINAL_STATUSES

    @property
    def dataset_names(self) -> set[str]:
        """Names of the datasets this job reads (split suffixes stripped)."""
        names = {self.dataset.split(":", 1)[0]}
        if isinstance(self.validation, str):
            names.add(self.validation.split(":", 1)[0])
        return names


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        status=JobStatus(row["status"]),
        dataset=row["dataset"],
        validation=_loads(row["validation"]),
        params=json.loads(row["params"]),
        promote=row["promote"],
        skip_invalid=bool(row["skip_invalid"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=_loads(row["progress"]),
        history=json.loads(row["history"]),
        metrics=_loads(row["metrics"]),
        model_version=row["model_version"],
        promoted=bool(row["promoted"]),
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        worker_id=row["worker_id"],
        heartbeat_at=row["heartbeat_at"],
    )


class JobStore:
    """Job queue and history over one SQLite file; every call opens its own short-lived connection."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            # WAL lets the API read while a worker writes progress.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            present = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in present:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Short-lived connections keep the store safe to use from any thread or process.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-update sequences are atomic.
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def create(
        self,
        dataset: str,
        *,
        validation: str | float | None = None,
        params: dict[str, Any] | None = None,
        promote: str = "if_better",
        skip_invalid: bool = False,
    ) -> Job:
        """Queue a new job and return it; `skip_invalid` drops invalid dataset rows instead of failing."""
        job_id = uuid.uuid4().hex
        with self._transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            conn.execute(
                "INSERT INTO jobs (id, seq, status, dataset, validation, params, promote, skip_invalid,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    seq,
                    JobStatus.QUEUED.value,
                    dataset,
                    None if validation is None else json.dumps(validation),
                    json.dumps(params or {}),
                    promote,
                    int(skip_invalid),
                    time.time(),
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row_to_job(row)

    def list_jobs(self, status: JobStatus | None = None, *, limit: int = 100, offset: int = 0) -> list[Job]:
        """Jobs newest first, optionally only those with one status."""
        query = "SELECT * FROM jobs"
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status.value,)
        query += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self._connect() as conn:
            rows = conn.execute(query, (*args, limit, offset)).fetchall()
        return [_row_to_job(row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs in each status (every status present, zeros included)."""
        counts = {status.value: 0 for status in JobStatus}
        with self._connect() as conn:
            for status, count in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
                counts[status] = count
        return counts

    def queue_position(self, job_id: str) -> int | None:
        """1-based position of a queued job in the queue, None when it is not queued."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM jobs AS o WHERE o.status = 'queued' AND o.seq <= j.seq)"
                " FROM jobs AS j WHERE j.id = ? AND j.status = 'queued'",
                (job_id,),
            ).fetchone()
        return None if row is None else int(row[0])

    def datasets_in_use(self) -> set[str]:
        """Names of the datasets read by queued or running jobs."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return {name for row in rows for name in _row_to_job(row).dataset_names}

    def claim_next(self, worker_id: str) -> Job | None:
        """Atomically move the oldest queued job to running for this worker; None when the queue is empty."""
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', worker_id = ?, started_at = ?, heartbeat_at = ?,"
                " progress = NULL, error = NULL WHERE id = ?",
                (worker_id, now, now, row["id"]),
            )
        return self.get(row["id"])

    def update_progress(
        self, job_id: str, progress: dict[str, Any], history: list[dict[str, Any]] | None = None
    ) -> None:
        """Record a progress snapshot (and the epoch history so far) of a running job; beats its heartbeat."""
        with self._connect() as conn:
            if history is None:
                conn.execute(
                    "UPDATE jobs SET progress = ?, heartbeat_at = ? WHERE id = ? AND status = 'running'",
                    (json.dumps(progress), time.time(), job_id),
                )
            else:
                conn.execute(
                    "UPDATE jobs SET progress = ?, history = ?, heartbeat_at = ?"
                    " WHERE id = ? AND status = 'running'",
                    (json.dumps(progress), json.dumps(history), time.time(), job_id),
                )

    def heartbeat(self, job_id: str) -> None:
        """Mark a running job's worker as alive now."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", (time.time(), job_id)
            )

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel this job."""
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and bool(row[0])

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once, flag a running one for its worker; finished jobs stay as they are."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ?"
                " WHERE id = ? AND status = 'queued'",
                (now, job_id),
            )
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
            )
        return self.get(job_id)

    def _finish(self, job_id: str, status: JobStatus, **columns: Any) -> bool:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._connect() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET status = ?, finished_at = ?{', ' if columns else ''}{assignments}"
                " WHERE id = ? AND status = 'running'",
                (status.value, time.time(), *columns.values(), job_id),
            )
        return cursor.rowcount == 1

    def mark_succeeded(
        self,
        job_id: str,
        *,
        metrics: dict[str, Any],
        history: list[dict[str, Any]],
        model_version: str,
        promoted: bool,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """Record a finished training run and the model version it produced."""
        return self._finish(
            job_id,
            JobStatus.SUCCEEDED,
            metrics=json.dumps(metrics),
            history=json.dumps(history),
            model_version=model_version,
            promoted=int(promoted),
            progress=None if progress is None else json.dumps(progress),
        )

    def mark_failed(self, job_id: str, error: str) -> bool:
        """Record that a running job failed, with a message for its owner."""
        return self._finish(job_id, JobStatus.FAILED, error=error)

    def mark_cancelled(self, job_id: str) -> bool:
        """Record that a running job stopped on request."""
        return self._finish(job_id, JobStatus.CANCELLED)

    def requeue(self, job_id: str) -> bool:
        """Put a running job back at its place in the queue (its worker is shutting down)."""
        with self._connect() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'queued', worker_id = NULL, started_at = NULL, heartbeat_at = NULL,"
                " progress = NULL, history = '[]' WHERE id = ? AND status = 'running'",
                (job_id,),
            )
        return cursor.rowcount == 1

    def running_jobs(self) -> list[Job]:
        """Jobs currently marked running, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY seq").fetchall()
        return [_row_to_job(row) for row in rows]

    def fail_worker_jobs(self, worker_id: str, reason: str) -> list[str]:
        """Mark the running jobs of a dead worker failed with the reason; returns their ids."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND worker_id = ?", (worker_id,)
            ).fetchall()
            conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?"
                " WHERE status = 'running' AND worker_id = ?",
                (reason, time.time(), worker_id),
            )
        return [row["id"] for row in rows]
