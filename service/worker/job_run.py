"""One job's run on a worker: load its datasets, train and store the model, decide its promotion."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from model.datasets import Dataset, DatasetError
from service.runtime.dataset_store import DatasetStore
from service.runtime.job_db import JobDatabaseUnavailable, until_answered
from service.runtime.job_record import Job
from service.runtime.job_store import JobStore
from service.runtime.model_store import ModelStore, ModelStoreError
from service.schemas.jobs import TrainParams
from service.worker.errors import JobError, JobLost
from service.worker.processes import TorchrunTrainer
from service.worker.promotion import decide_promotion

if TYPE_CHECKING:
    from model.config import TrainConfig
    from model.progress import Progress
    from model.runs import Trainer

log = logging.getLogger("service.worker")
T = TypeVar("T")

_PROGRESS_EVERY_S = 0.5
_LOG_EVERY_S = 5.0


class ProgressWriter:
    """`on_progress` for `train`: throttled snapshots and the epoch history to the store, log lines."""

    def __init__(self, jobs: JobStore, job_id: str) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.history: list[dict[str, Any]] = []
        self._written = 0.0
        self._logged = 0.0
        self._stage = ""

    def __call__(self, progress: Progress) -> None:
        """Record one progress report."""
        snapshot = {key: value for key, value in asdict(progress).items() if key != "metrics"}
        epoch_done = progress.metrics is not None
        if epoch_done:
            entry = {"epoch": progress.epoch, "loss": progress.loss, "val": progress.metrics}
            self.history.append({**entry, "fold": progress.fold} if progress.folds else entry)
        now = time.monotonic()
        if epoch_done or progress.stage != self._stage or now - self._written >= _PROGRESS_EVERY_S:
            try:
                self.jobs.update_progress(self.job_id, snapshot, self.history if epoch_done else None)
            except JobDatabaseUnavailable as exc:  # the job trains on; a later write carries the history
                log.warning("job %s: progress not recorded: %s", self.job_id, exc)
            self._written = now
        if epoch_done or progress.stage != self._stage or now - self._logged >= _LOG_EVERY_S:
            self._log(progress)
            self._logged = now
        self._stage = progress.stage

    def _log(self, p: Progress) -> None:
        loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
        eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
        val = " val " + " ".join(f"{k} {v:.3f}" for k, v in p.metrics.items()) if p.metrics else ""
        fold = f" fold {p.fold}/{p.folds}" if p.folds else ""
        log.info(
            "job %s:%s %s epoch %d/%d step %d/%d%s%s%s",
            self.job_id,
            fold,
            p.stage,
            p.epoch,
            p.epochs,
            p.step,
            p.steps,
            loss,
            val,
            eta,
        )


class JobRunner:
    """Trains a claimed job and stores its outcome: the checkpoint, the promotion, the job's record."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        datasets: DatasetStore,
        models: ModelStore,
        cache_dir: Path,
        work_dir: Path,
        device: str,
        worker_id: str,
        stopping: Callable[[], bool],
    ) -> None:
        self.jobs = jobs
        self.datasets = datasets
        self.models = models
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.device = device
        self.worker_id = worker_id
        self.stopping = stopping  # the worker stops: a write waiting for the job database gives up

    def run(self, job: Job, should_stop: Callable[[], bool]) -> None:
        """Train, save, promote and record `job`; JobError, JobLost, TrainingCancelled, DatasetError."""
        from model.checkpoint import CheckpointError
        from model.export import export_for_serving
        from model.features import FeatureCache, FeatureCacheError
        from model.runs import train_and_save
        from model.training import train

        params = TrainParams.model_validate(job.params)
        train_set = self.datasets.load(job.dataset, skip_invalid=job.skip_invalid)
        # Counted before any split: a held-out part of the training set starts with skipped == 0.
        skipped_rows = {"dataset": train_set.skipped, "validation": 0}
        fraction = job.validation if isinstance(job.validation, float) else None
        folds = job.cv["folds"] if job.cv else 0
        model_config, train_config = params.configs(
            train_set.labels, device=self.device, val_fraction=fraction, cv_folds=folds
        )
        val_set = test_set = None
        if isinstance(job.validation, str):
            val_set = self._load_split(job, job.validation, "validation", train_set.labels)
            skipped_rows["validation"] = val_set.skipped
        if job.test is not None:
            test_set = self._load_split(job, job.test, "test", train_set.labels)
            skipped_rows["test"] = test_set.skipped
        log.info(
            "job %s: %d samples, validation %s, test %s, cv %s, labels %s, invalid rows skipped %s",
            job.id,
            len(train_set),
            len(val_set) if val_set is not None else f"a {train_config.val_fraction} slice",
            len(test_set) if test_set is not None else "none",
            f"{folds} folds" if folds else "off",
            ", ".join(train_set.labels),
            skipped_rows,
        )
        trainer: Trainer = train
        if train_config.nproc > 1:
            trainer = TorchrunTrainer(job.id, self.work_dir, self._data_args(job, train_config))
        try:
            result, path = train_and_save(
                self.models.new_version_path,
                model_config,
                train_config,
                train_set,
                val_set,
                test_set=test_set,
                cache=FeatureCache(self.cache_dir),
                on_progress=ProgressWriter(self.jobs, job.id),
                should_stop=should_stop,
                # Cancelled during the final evaluation: discard the model.
                discard=lambda: self._answered(lambda: self.jobs.cancel_requested(job.id)),
                extra={
                    "job_id": job.id,
                    "dataset": job.dataset,
                    "validation": job.validation,
                    "test": job.test,
                },
                trainer=trainer,
            )
        except (CheckpointError, FeatureCacheError) as exc:
            raise JobError(str(exc)) from exc
        assert path is not None  # the worker's own process saves
        # A job another worker declared dead reads "failed": its model must not go live. The saved version
        # stays in the store, inactive (an operator may still activate it by hand).
        current = self._answered(lambda: self.jobs.get(job.id))
        if current is None or not current.runs_on(self.worker_id):
            raise JobLost(f"trained; version {path.name} saved but not activated")
        onnx = export_for_serving(path)  # before promotion: a promoted version carries its graph
        metric = train_config.metric
        # The validation figure (with cv: the held-out folds' mean); the test reports never enter here.
        value = result.metrics["fusion"][metric]
        promotion = self._promote(job, path.name, metric, value)
        metrics = {
            **result.metrics,
            "labels": list(result.model.labels),
            "best_epoch": result.best_epoch,
            "metric": metric,
            "validation_split": result.metrics_split,
            "promotion": promotion,
            "skipped_rows": skipped_rows,
            "onnx": onnx,
        }
        if result.test_metrics is not None:
            metrics["test"] = result.test_metrics
        if result.cv is not None:
            metrics["cv"] = result.cv
        done = {
            "stage": "done",
            "epoch": result.best_epoch,
            "epochs": train_config.epochs,
            "step": 0,
            "steps": 0,
            "loss": None,
            "eta_s": 0.0,
            "fraction": 1.0,
        }
        recorded = self._answered(
            lambda: self.jobs.mark_succeeded(
                job.id,
                worker_id=self.worker_id,
                metrics=metrics,
                history=result.history,
                model_version=path.name,
                promoted=promotion["promoted"],
                progress=done,
            )
        )
        if not recorded:
            raise JobLost(f"trained and saved version {path.name} ({promotion['reason']})")
        log.info(
            "job %s: succeeded, version %s, %s %.4f; %s",
            job.id,
            path.name,
            metric,
            value,
            promotion["reason"],
        )

    def _answered(self, call: Callable[[], T]) -> T:
        """`call()`, waiting while the job database does not answer (a restart), unless the worker stops."""
        return until_answered(call, given_up=self.stopping)

    def _load_split(self, job: Job, ref: str, field: str, labels: Sequence[str]) -> Dataset:
        """A validation or test split, labelled like the training set; JobError naming `field`."""
        try:
            return self.datasets.load(ref, labels=labels, skip_invalid=job.skip_invalid)
        except DatasetError as exc:
            raise JobError(f"{field}: {exc}") from exc

    def _promote(self, job: Job, version: str, metric: str, value: float) -> dict[str, Any]:
        """Activate the new version if the job's policy says so; returns the decision and why."""
        active = None
        try:
            active = self.models.active_version()
        except ModelStoreError as exc:
            log.warning("job %s: active pointer unreadable (%s)", job.id, exc)
        in_store = active is not None and self.models.exists(active)
        active_metrics = self.models.get(active).metrics if active is not None and in_store else None
        decision = decide_promotion(job.promote, metric, value, active=active, active_metrics=active_metrics)
        if decision["promoted"]:
            try:
                self.models.activate(version)
            except ModelStoreError as exc:
                raise JobError(f"version {version} was saved but cannot be activated: {exc}") from exc
        return decision

    def _data_args(self, job: Job, train_config: TrainConfig) -> list[str]:
        """`python -m model train` options for this job's datasets, validation and feature cache."""
        path, split = self.datasets.resolve(job.dataset)
        args = [str(path.resolve()), "--cache-dir", str(self.cache_dir.resolve())]
        if split is not None:
            args += ["--split", split]
        if isinstance(job.validation, str):
            val_path, val_split = self.datasets.resolve(job.validation)
            args += ["--val", str(val_path.resolve())]
            if val_split is not None:
                args += ["--val-split", val_split]
        else:
            args += ["--val-fraction", repr(train_config.val_fraction)]
        if job.skip_invalid:
            args.append("--skip-invalid")
        return args
