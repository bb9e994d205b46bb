"""The claim loop: claim queued jobs one at a time, beat their heartbeats, fail dead workers' jobs."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from model.atomic import remove_abandoned_writes
from model.datasets import DatasetError
from service.disk_full import disk_full_reason
from service.runtime.dataset_store import DatasetStore, DatasetStoreError
from service.runtime.job_db import RETRY_S, JobDatabaseUnavailable, until_answered
from service.runtime.job_record import Job
from service.runtime.job_store import JobStore
from service.runtime.model_store import ModelStore
from service.runtime.zip_extract import ZipLimits
from service.settings import Settings
from service.worker.errors import JobError, JobLost
from service.worker.identity import HEARTBEAT_S, STALE_AFTER_S, make_worker_id, worker_alive
from service.worker.job_run import JobRunner
from service.worker.processes import remove_stale_work_dirs

log = logging.getLogger("service.worker")
T = TypeVar("T")

_SWEEP_EVERY_S = 30.0
_CANCEL_CHECK_EVERY_S = 0.5


class _Heartbeat:
    """Beats a running job's heartbeat from a thread, so that long silent stages do not look dead."""

    def __init__(self, jobs: JobStore, job_id: str, worker_id: str) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._worker_id = worker_id
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(HEARTBEAT_S):
            try:
                if not self._jobs.heartbeat(self._job_id, self._worker_id) and not self._done.is_set():
                    # Finished a moment ago, or declared dead by another worker (then the training's stop
                    # check ends the job, and says so).
                    log.info("job %s: no longer running on this worker; heartbeats stop", self._job_id)
                    return
            except JobDatabaseUnavailable as exc:  # a database restart must not kill the job either
                log.warning("heartbeat of job %s not recorded: %s", self._job_id, exc)
            except Exception:  # a busy database must not kill the job; the next beat retries
                log.warning("heartbeat of job %s failed", self._job_id, exc_info=True)


class Worker:
    """Runs queued jobs until stopped; `run_once` runs a single one (used by tests)."""

    def __init__(
        self, settings: Settings, *, worker_id: str | None = None, parent_pid: int | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or make_worker_id(os.getpid(), uuid.uuid4().hex[:8])
        self.parent_pid = parent_pid
        data_dir = settings.data_dir
        self.jobs = JobStore.from_settings(settings)
        self.datasets = DatasetStore(data_dir, ZipLimits.from_settings(settings))
        self.models = ModelStore(settings.model_dir)
        self.cache_dir = data_dir / "cache" / "features"
        self.work_dir = data_dir / "cache" / "jobs"  # one folder per job that trains under torchrun
        self._runner = JobRunner(
            jobs=self.jobs,
            datasets=self.datasets,
            models=self.models,
            cache_dir=self.cache_dir,
            work_dir=self.work_dir,
            device=settings.device,
            worker_id=self.worker_id,
            stopping=lambda: self.stopping,
        )
        self._stop = threading.Event()
        self._last_sweep = 0.0

    def close(self) -> None:
        """Release the job database's connections (after `run` or the last `run_once`)."""
        self.jobs.close()

    def stop(self) -> None:
        """Finish soon: a running job stops at its next step and goes back to the queue."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop, or lost the API process that started it."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            if not self._stop.is_set():
                log.warning("parent process %s is gone; stopping", self.parent_pid)
            self._stop.set()
        return self._stop.is_set()

    def recover(self) -> list[str]:
        """Fail the running jobs of workers that died (dead pid on this host, or silent for too long)."""
        self._last_sweep = time.monotonic()
        failed: list[str] = []
        for job in self.jobs.running_jobs():
            if job.worker_id is None or job.worker_id == self.worker_id:
                continue
            alive = worker_alive(job.worker_id)
            silent_s = time.time() - (job.heartbeat_at or job.started_at or 0.0)
            if alive is False:
                reason = f"worker {job.worker_id} died while running this job"
            elif alive is None and silent_s > STALE_AFTER_S:
                reason = f"worker {job.worker_id} stopped sending heartbeats {silent_s:.0f} s ago"
            else:
                continue
            failed += self.jobs.fail_worker_jobs(job.worker_id, reason)
            log.warning("job %s failed: %s", job.id, reason)
        return failed

    def run(self) -> None:
        """Claim and run jobs until `stop()` (or SIGTERM)."""
        log.info(
            "worker %s started (data %s, models %s)",
            self.worker_id,
            self.settings.data_dir,
            self.settings.model_dir,
        )
        self._answered(self.recover)
        running = self._answered(self.jobs.running_jobs)
        remove_stale_work_dirs(self.work_dir, lambda: (job.id for job in running))
        abandoned = self.models.remove_abandoned_saves()
        if abandoned:
            log.warning("removed what killed writes left in the model store: %s", ", ".join(abandoned))
        abandoned = remove_abandoned_writes(self.cache_dir)
        if abandoned:
            log.warning("removed what killed writes left in the feature cache: %s", ", ".join(abandoned))
        while not self.stopping:
            try:
                if self.run_once() is None:
                    if time.monotonic() - self._last_sweep > _SWEEP_EVERY_S:
                        self._answered(self.recover)
                    self._stop.wait(self.settings.worker_poll_interval_s)
            except JobDatabaseUnavailable as exc:  # a restart of the database: claim again once it answers
                log.warning("%s; looking for jobs again in %.0f s", exc, RETRY_S)
                self._stop.wait(RETRY_S)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> Job | None:
        """Claim the next queued job and run it to the end; returns the final record, None if none queued."""
        job = self.jobs.claim_next(self.worker_id)
        if job is None:
            return None
        log.info(
            "job %s: started on %s (validation %s, promote %s)",
            job.id,
            job.dataset,
            job.validation,
            job.promote,
        )
        with _Heartbeat(self.jobs, job.id, self.worker_id):
            self._run(job)
        return self.jobs.get(job.id)

    def _run(self, job: Job) -> None:
        from model.training import TrainingCancelled

        try:
            self._runner.run(job, self._should_stop(job.id))
        except TrainingCancelled:
            if self._answered(lambda: self.jobs.cancel_requested(job.id)):
                recorded = self._answered(lambda: self.jobs.mark_cancelled(job.id, worker_id=self.worker_id))
                outcome = "cancelled; nothing was written to the model store"
            else:
                recorded = self._answered(lambda: self.jobs.requeue(job.id, worker_id=self.worker_id))
                outcome = "worker stopping; job put back in the queue"
            if recorded:
                log.info("job %s: %s", job.id, outcome)
            else:
                self._lost(job, "stopped")
        except JobLost as exc:
            self._lost(job, str(exc))
        except JobError as exc:
            self._fail(job, str(exc))
        except DatasetError as exc:
            self._fail(job, f"dataset: {exc}")
        except DatasetStoreError as exc:
            self._fail(job, exc.message)
        except Exception as exc:
            reason = disk_full_reason(exc)
            if reason is None:
                log.exception("job %s: failed", job.id)
                self._fail(job, f"{type(exc).__name__}: {exc}")
            else:  # e.g. a progress write into a job database whose disk is full: no bug, no traceback
                self._fail(job, f"insufficient storage ({reason}): {type(exc).__name__}: {exc}")

    def _fail(self, job: Job, message: str) -> None:
        if self._answered(lambda: self.jobs.mark_failed(job.id, message, worker_id=self.worker_id)):
            log.error("job %s: failed: %s", job.id, message)
        else:
            self._lost(job, f"failed ({message})")

    def _answered(self, write: Callable[[], T]) -> T:
        """Run `write` (a job's final write, a recovery sweep), tried again while the job database cannot take
        it: not answering (a restart), or out of space (rather than die and be restarted into the same full
        disk). A worker stopped meanwhile gives up (raises): the next worker's recovery fails its job instead.
        """
        return until_answered(write, given_up=lambda: self.stopping, wait=self._stop.wait, while_full=True)

    def _lost(self, job: Job, outcome: str) -> None:
        current = self._answered(lambda: self.jobs.get(job.id))
        status = "gone" if current is None else f"{current.status.value}, worker {current.worker_id}"
        log.warning(
            "job %s: %s, but it is no longer running on this worker (now %s); nothing recorded",
            job.id,
            outcome,
            status,
        )

    def _should_stop(self, job_id: str) -> Callable[[], bool]:
        last_check = 0.0
        stop = False

        def should_stop() -> bool:
            """True once the job is cancelled or no longer running on this worker, or the worker stops."""
            nonlocal last_check, stop
            now = time.monotonic()
            if not stop and now - last_check >= _CANCEL_CHECK_EVERY_S:
                # Through a database outage the job trains on: its final write waits for the database.
                with contextlib.suppress(JobDatabaseUnavailable):
                    job = self.jobs.get(job_id)
                    # Another worker fails a job whose heartbeats stopped: training on would promote it.
                    stop = job is None or job.cancel_requested or not job.runs_on(self.worker_id)
                last_check = time.monotonic()
            return stop or self.stopping

        return should_stop
