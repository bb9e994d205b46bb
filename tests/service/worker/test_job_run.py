"""One job's run: training, storing, promotion, and the failures that leave nothing half-written."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest

from fusion_testkit.factories import build_tiny_model
from model.checkpoint import save_checkpoint
from model.progress import Progress
from service.runtime.job_record import JobStatus
from service.schemas.jobs import JobProgress
from service.worker.job_run import ProgressWriter
from service.worker.loop import Worker
from tests.service.worker.running_jobs import Params, queue, version_with_metric


def test_job_trains_saves_and_promotes_with_no_active_model(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.id == job.id
    assert done.status is JobStatus.SUCCEEDED
    assert done.promoted and worker.models.active_version() == done.model_version
    assert [entry["epoch"] for entry in done.history] == [1, 2, 3]
    assert set(done.history[0]["val"]) == {"accuracy", "macro_f1", "weighted_f1"}
    assert done.metrics is not None and done.metrics["labels"] == ["negative", "positive"]
    assert done.metrics["fusion"]["confusion_matrix"]
    assert done.progress is not None and done.progress["fraction"] == 1.0
    meta = worker.models.get(done.model_version or "").meta
    assert meta is not None and meta["extra"]["job_id"] == job.id


def test_a_trained_version_carries_its_graphs_and_the_job_says_so(
    worker: Worker, tiny_job_params: Params
) -> None:
    queue(worker, tiny_job_params, promote="always")
    done = worker.run_once()
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.metrics is not None
    assert done.metrics["onnx"] == {
        "exported": True,
        "file": "model.onnx",
        "int8_file": "model.int8.onnx",
        "opset": 17,
    }
    path = worker.models.version_path(done.model_version or "")
    assert (path / "model.onnx").is_file() and (path / "model.int8.onnx").is_file()


def test_promote_never_keeps_the_active_model(worker: Worker, tiny_job_params: Params) -> None:
    active = version_with_metric(worker.models, 0.0)
    queue(worker, tiny_job_params, promote="never")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert not done.promoted and worker.models.exists(done.model_version or "")
    assert worker.models.active_version() == active


def test_if_better_refuses_a_model_that_does_not_beat_the_active_one(
    worker: Worker, tiny_job_params: Params
) -> None:
    active = version_with_metric(worker.models, 1.0)
    queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED and not done.promoted
    assert worker.models.active_version() == active
    assert done.metrics is not None
    assert "does not beat" in done.metrics["promotion"]["reason"]
    assert done.metrics["promotion"]["previous_value"] == 1.0


def test_if_better_promotes_a_better_model(worker: Worker, tiny_job_params: Params) -> None:
    version_with_metric(worker.models, 0.0)
    queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.promoted and worker.models.active_version() == done.model_version


def test_fraction_validation_splits_the_training_set(worker: Worker, tiny_job_params: Params) -> None:
    queue(worker, {**tiny_job_params, "epochs": 1}, validation=0.25, promote="never")

    done = worker.run_once()

    assert done is not None and done.metrics is not None
    support = sum(c["support"] for c in done.metrics["fusion"]["per_class"].values())
    assert support == 8  # a quarter of the 32 training samples


def test_unknown_validation_labels_fail_the_job_with_the_reason(
    worker: Worker, tiny_job_params: Params, tmp_path: Path
) -> None:
    demo, other = tmp_path / "data" / "datasets" / "demo", tmp_path / "data" / "datasets" / "other"
    shutil.copytree(demo / "images", other / "images")
    (other / "train.jsonl").write_text((demo / "dev.jsonl").read_text().replace('"negative"', '"neither"'))
    queue(worker, tiny_job_params, validation="other")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and "validation" in done.error and "unknown_label" in done.error


def test_write_failure_while_saving_leaves_nothing_half_written(
    worker: Worker, tiny_job_params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = version_with_metric(worker.models, 0.0)

    def disk_full(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("model.checkpoint.save_file", disk_full)
    queue(worker, {**tiny_job_params, "epochs": 1}, promote="always")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and "could not save the model" in done.error and "No space" in done.error
    assert sorted(p.name for p in worker.models.versions_dir.iterdir()) == [active]
    assert worker.models.active_version() == active


def test_job_declared_dead_while_saving_keeps_its_version_inactive(
    worker: Worker, tiny_job_params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = version_with_metric(worker.models, 0.0)
    job = queue(worker, {**tiny_job_params, "epochs": 1}, promote="always")

    def save_then_lose_the_job(*args: Any, **kwargs: Any) -> Path:
        path = save_checkpoint(*args, **kwargs)
        worker.jobs.fail_worker_jobs(worker.worker_id, "stopped sending heartbeats")
        return path

    monkeypatch.setattr("model.checkpoint.save_checkpoint", save_then_lose_the_job)

    done = worker.run_once()

    assert done is not None and done.id == job.id
    assert (done.status, done.error, done.model_version, done.promoted) == (
        JobStatus.FAILED,
        "stopped sending heartbeats",
        None,
        False,
    )
    assert worker.models.active_version() == active
    assert len(worker.models.list_versions()) == 2  # the new version stays in the store, inactive


def test_a_test_split_changes_no_decision_of_the_job(worker: Worker, tiny_job_params: Params) -> None:
    version_with_metric(worker.models, 1.0)  # not beaten: both jobs must decide alike
    runs = []
    for test in ("demo:dev", "demo:train"):
        queue(worker, tiny_job_params, validation=0.25, test=test, promote="if_better")
        done = worker.run_once()
        assert done is not None and done.status is JobStatus.SUCCEEDED, done and done.error
        runs.append(done)

    first, second = runs
    assert first.metrics is not None and second.metrics is not None
    assert (first.history, first.metrics["best_epoch"]) == (second.history, second.metrics["best_epoch"])
    decisions = [run.metrics["promotion"] for run in runs if run.metrics is not None]
    assert decisions[0] == decisions[1] and not first.promoted and not second.promoted
    assert decisions[0]["value"] == first.metrics["fusion"]["accuracy"]
    assert first.metrics["test"]["fusion"]["per_class"]["negative"]["support"] == 4  # demo:dev, 8 rows
    assert second.metrics["test"]["fusion"]["per_class"]["negative"]["support"] == 16  # demo:train, 32 rows
    weights = [worker.models.get(run.model_version or "").path / "model.safetensors" for run in runs]
    assert weights[0].read_bytes() == weights[1].read_bytes()


def test_if_better_never_reads_the_active_versions_test_metrics(
    worker: Worker, tiny_job_params: Params
) -> None:
    model = build_tiny_model(labels=("negative", "positive"))
    path = save_checkpoint(
        worker.models.new_version_path(),
        model,
        metrics={"fusion": {"accuracy": 0.0}, "test": {"fusion": {"accuracy": 1.0}}, "accuracy": None},
        dataset_fingerprint="test",
    )
    worker.models.activate(path.name)
    queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.promoted and done.metrics is not None
    assert done.metrics["promotion"]["previous_value"] == 0.0


def test_a_cv_job_stores_one_model_and_the_fold_reports(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(
        worker, tiny_job_params, validation=0.25, cv={"folds": 3}, test="demo:dev", promote="if_better"
    )

    done = worker.run_once()

    assert done is not None and done.id == job.id and done.status is JobStatus.SUCCEEDED, done and done.error
    assert done.metrics is not None and done.promoted
    cv = done.metrics["cv"]
    assert len(cv["folds"]) == 3 and set(cv["mean"]["fusion"]) >= {"accuracy", "macro_f1", "weighted_f1"}
    assert done.metrics["validation_split"] == "cv"
    assert done.metrics["promotion"]["value"] == cv["mean"]["fusion"]["accuracy"]
    assert done.metrics["best_epoch"] == cv["final_epochs"] and len(done.history) == cv["final_epochs"]
    assert sum(fold["heldout_samples"] for fold in cv["folds"]) == 32
    assert "test" in done.metrics
    assert [v.version for v in worker.models.list_versions()] == [done.model_version]


def test_progress_of_a_cv_job_names_the_fold(worker: Worker, tiny_job_params: Params) -> None:
    job = queue(worker, tiny_job_params, cv={"folds": 3})
    assert worker.jobs.claim_next(worker.worker_id) is not None
    write = ProgressWriter(worker.jobs, job.id)

    write(Progress("evaluating", 1, 3, 2, 2, 0.5, {"accuracy": 0.5}, fraction=1.0, fold=2, folds=3))

    running = worker.jobs.get(job.id)
    assert running is not None and running.progress is not None
    assert (running.progress["fold"], running.progress["folds"]) == (2, 3)
    assert running.history == [{"epoch": 1, "loss": 0.5, "val": {"accuracy": 0.5}, "fold": 2}]
    assert JobProgress.model_validate(running.progress).fold == 2
