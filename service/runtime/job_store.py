"""Training-job records in SQLite (WAL) or PostgreSQL, shared by the API processes and the workers."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from service.runtime.job_db import JobDatabase, SqliteDatabase, open_job_database
from service.runtime.job_record import Job, JobStatus, job_from_row
from service.settings import Settings

# `{real}` is the dialect's floating-point type; booleans are INTEGER 0/1 in both dialects.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    dataset TEXT NOT NULL,
    validation TEXT,
    params TEXT NOT NULL,
    promote TEXT NOT NULL,
    skip_invalid INTEGER NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    started_at {real},
    finished_at {real},
    progress TEXT,
    history TEXT NOT NULL DEFAULT '[]',
    metrics TEXT,
    model_version TEXT,
    promoted INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    heartbeat_at {real},
    test TEXT,
    cv TEXT
)""",
    "CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq)",
)
# Columns added after the first release, added to older job databases on open.
_ADDED_COLUMNS = {"skip_invalid": "INTEGER NOT NULL DEFAULT 0", "test": "TEXT", "cv": "TEXT"}


class JobStore:
    """Job queue and history over one job database: a SQLite file (a path) or a `JobDatabase`."""

    def __init__(self, database: Path | JobDatabase, *, busy_timeout_s: float = 30.0) -> None:
        self.database = (
            database
            if isinstance(database, JobDatabase)
            else SqliteDatabase(Path(database), busy_timeout_s=busy_timeout_s)
        )
        try:
            self._create_schema()
        except BaseException:
            self.database.close()
            raise

    def _create_schema(self) -> None:
        # Under the write lock: the API and a worker may open a new database at the same moment.
        with self.database.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement.format(real=self.database.real_type))
            present = self.database.column_names(conn, "jobs")
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in present:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """The store FUSION_JOB_DB_URL names: PostgreSQL for a postgresql:// URL, else SQLite in data_dir."""
        return cls(open_job_database(settings.job_db_url, settings.data_dir / "jobs.sqlite3"))

    @property
    def path(self) -> Path:
        """The SQLite file behind this store (a PostgreSQL-backed store has none: TypeError)."""
        if not isinstance(self.database, SqliteDatabase):
            raise TypeError("this job store is not backed by a SQLite file")
        return self.database.path

    def close(self) -> None:
        """Release the connections the store holds (PostgreSQL's pool, SQLite's idle connection)."""
        self.database.close()

    def create(
        self,
        dataset: str,
        *,
        validation: str | float | None = None,
        params: dict[str, Any] | None = None,
        promote: str = "if_better",
        skip_invalid: bool = False,
        test: str | None = None,
        cv: dict[str, Any] | None = None,
    ) -> Job:
        """Queue a new job and return it; `skip_invalid` drops invalid dataset rows instead of failing."""
        job_id = uuid.uuid4().hex
        with self.database.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM jobs").fetchone()["seq"]
            conn.execute(
                "INSERT INTO jobs (id, seq, status, dataset, validation, params, promote, skip_invalid,"
                " created_at, test, cv) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    test,
                    None if cv is None else json.dumps(cv),
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self.database.connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    def list_jobs(self, status: JobStatus | None = None, *, limit: int = 100, offset: int = 0) -> list[Job]:
        """Jobs newest first, optionally only those with one status."""
        query = "SELECT * FROM jobs"
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status.value,)
        query += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self.database.connect() as conn:
            rows = conn.execute(query, (*args, limit, offset)).fetchall()
        return [job_from_row(row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs in each status (every status present, zeros included)."""
        counts = {status.value: 0 for status in JobStatus}
        with self.database.connect() as conn:
            for row in conn.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall():
                counts[row["status"]] = int(row["n"])
        return counts

    def queue_position(self, job_id: str) -> int | None:
        """1-based position of a queued job in the queue, None when it is not queued."""
        with self.database.connect() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM jobs AS o WHERE o.status = 'queued' AND o.seq <= j.seq)"
                " AS position FROM jobs AS j WHERE j.id = ? AND j.status = 'queued'",
                (job_id,),
            ).fetchone()
        return None if row is None else int(row["position"])

    def datasets_in_use(self) -> set[str]:
        """Names of the datasets read by queued or running jobs."""
        with self.database.connect() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return {name for row in rows for name in job_from_row(row).dataset_names}

    def claim_next(self, worker_id: str) -> Job | None:
        """Atomically move the oldest queued job to running for this worker; None when the queue is empty."""
        now = time.time()
        with self.database.transaction() as conn:
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
        with self.database.connect() as conn:
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

    def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Mark the job's worker as alive now; False when the job is no longer running on that worker."""
        with self.database.connect() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND worker_id = ?",
                (time.time(), job_id, worker_id),
            )
            return cursor.rowcount == 1

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel this job."""
        with self.database.connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and bool(row["cancel_requested"])

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once, flag a running one for its worker; finished jobs stay as they are."""
        now = time.time()
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ?"
                " WHERE id = ? AND status = 'queued'",
                (now, job_id),
            )
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
            )
        return self.get(job_id)

    def _finish(self, job_id: str, worker_id: str, status: JobStatus, **columns: Any) -> bool:
        """Move a job that is running on `worker_id` to a final state; False when it is not (any more)."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self.database.connect() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET status = ?, finished_at = ?{', ' if columns else ''}{assignments}"
                " WHERE id = ? AND status = 'running' AND worker_id = ?",
                (status.value, time.time(), *columns.values(), job_id, worker_id),
            )
            # Read before the connection goes back (PostgreSQL's pool) or is closed (SQLite).
            return cursor.rowcount == 1

    def mark_succeeded(
        self,
        job_id: str,
        *,
        worker_id: str,
        metrics: dict[str, Any],
        history: list[dict[str, Any]],
        model_version: str,
        promoted: bool,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """Record a finished training run and the model version it produced; False if `worker_id` lost it."""
        return self._finish(
            job_id,
            worker_id,
            JobStatus.SUCCEEDED,
            metrics=json.dumps(metrics),
            history=json.dumps(history),
            model_version=model_version,
            promoted=int(promoted),
            progress=None if progress is None else json.dumps(progress),
        )

    def mark_failed(self, job_id: str, error: str, *, worker_id: str) -> bool:
        """Record that a job running on `worker_id` failed, with a message for its owner."""
        return self._finish(job_id, worker_id, JobStatus.FAILED, error=error)

    def mark_cancelled(self, job_id: str, *, worker_id: str) -> bool:
        """Record that a job running on `worker_id` stopped on request."""
        return self._finish(job_id, worker_id, JobStatus.CANCELLED)

    def requeue(self, job_id: str, *, worker_id: str) -> bool:
        """Put a job running on `worker_id` back at its place in the queue (its worker is shutting down)."""
        with self.database.connect() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'queued', worker_id = NULL, started_at = NULL, heartbeat_at = NULL,"
                " progress = NULL, history = '[]' WHERE id = ? AND status = 'running' AND worker_id = ?",
                (job_id, worker_id),
            )
            return cursor.rowcount == 1

    def running_jobs(self) -> list[Job]:
        """Jobs currently marked running, oldest first."""
        with self.database.connect() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY seq").fetchall()
        return [job_from_row(row) for row in rows]

    def fail_worker_jobs(self, worker_id: str, reason: str) -> list[str]:
        """Mark the running jobs of a dead worker failed with the reason; returns their ids."""
        with self.database.connect() as conn:
            rows = conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?"
                " WHERE status = 'running' AND worker_id = ? RETURNING id",
                (reason, time.time(), worker_id),
            ).fetchall()
        return [row["id"] for row in rows]
