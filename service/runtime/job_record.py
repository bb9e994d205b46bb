"""A training job as the API and the workers see it: its status lifecycle and its record (one table row)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Lifecycle of a job: queued -> running -> one of the three final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


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
    test: str | None = None  # a dataset reference measured on the final model only
    cv: dict[str, Any] | None = None  # {"folds": k}: k-fold cross-validation first

    @property
    def finished(self) -> bool:
        """True once the job reached a final state."""
        return self.status in FINAL_STATUSES

    def runs_on(self, worker_id: str) -> bool:
        """Whether the job is running on this worker (not finished, nor declared dead by another worker)."""
        return self.status is JobStatus.RUNNING and self.worker_id == worker_id

    @property
    def dataset_names(self) -> set[str]:
        """Names of the datasets this job reads (split suffixes stripped)."""
        refs = [self.dataset, self.validation, self.test]
        return {ref.split(":", 1)[0] for ref in refs if isinstance(ref, str)}


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def job_from_row(row: Any) -> Job:
    """A `Job` from a row of the jobs table (a mapping of column names), JSON columns decoded."""
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
        test=row["test"],
        cv=_loads(row["cv"]),
    )
