"""The training worker, run in-process on real jobs: training, promotion, cancel, stop, faults."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model.checkpoint import save_checkpoint
from model.device import available_cpus
from service.runtime.job_store import Job, JobStatus
from service.runtime.model_store import ModelStore
from service.runtime.worker_supervisor import child_env
from service.schemas.jobs import TrainParams
from service.settings import Settings
from service.worker import STALE_AFTER_S, JobError, Worker, _run_training_processes, make_worker_id
from tests.factories import build_tiny_model

Params = dict[str, Any]


@pytest.fixture
def worker(make_settings: Callable[..., Settings], demo_dataset: str) -> Iterator[Worker]:
    worker = Worker(make_settings(device="cpu"))
    yield worker
    worker.close()


def _queue(worker: Worker, params: Params, **kwargs: Any) -> Job:
    kwargs.setdefault("validation", "demo:dev")
    return worker.jobs.create("demo", params=TrainParams(**params).model_dump(), **kwargs)


def _version_with_metric(store: ModelStore, macro_f1: float) -> str:
    """An active version whose recorded validation macro_f1 is `macro_f1`."""
    model = build_tiny_model(labels=("match", "mismatch"))
    path = save_checkpoint(
        store.new_version_path(),
        model,
        metrics={"fusion": {"macro_f1": macro_f1, "accuracy": macro_f1}},
        dataset_fingerprint="test",
    )
    store.activate(path.name)
    return path.name


def _run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    return thread


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _training_started(worker: Worker, job_id: str) -> Callable[[], bool]:
    def check() -> bool:
        job = worker.jobs.get(job_id)
        return job is not None and job.progress is not None and job.progress["stage"] == "training"

    return check


def test_job_trains_saves_and_promotes_with_no_active_model(worker: Worker, tiny_job_params: Params) -> None:
    job = _queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.id == job.id
    assert done.status is JobStatus.SUCCEEDED
    assert done.promoted and worker.models.active_version() == done.model_version
    assert [entry["epoch"] for entry in done.history] == [1, 2, 3]
    assert set(done.history[0]["val"]) == {"accuracy", "macro_f1", "weighted_f1"}
    assert done.metrics is not None and done.metrics["labels"] == ["match", "mismatch"]
    assert done.metrics["fusion"]["confusion_matrix"]
    assert done.progress is not None and done.progress["fraction"] == 1.0
    meta = worker.models.get(done.model_version or "").meta
    assert meta is not None and meta["extra"]["job_id"] == job.id


def test_promote_never_keeps_the_active_model(worker: Worker, tiny_job_params: Params) -> None:
    active = _version_with_metric(worker.models, 0.0)
    _queue(worker, tiny_job_params, promote="never")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert not done.promoted and worker.models.exists(done.model_version or "")
    assert worker.models.active_version() == active


def test_if_better_refuses_a_model_that_does_not_beat_the_active_one(
    worker: Worker, tiny_job_params: Params
) -> None:
    active = _version_with_metric(worker.models, 1.0)
    _queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED and not done.promoted
    assert worker.models.active_version() == active
    assert done.metrics is not None
    assert "does not beat" in done.metrics["promotion"]["reason"]
    assert done.metrics["promotion"]["previous_value"] == 1.0


def test_if_better_promotes_a_better_model(worker: Worker, tiny_job_params: Params) -> None:
    _version_with_metric(worker.models, 0.0)
    _queue(worker, tiny_job_params, promote="if_better")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.promoted and worker.models.active_version() == done.model_version


def test_fraction_validation_splits_the_training_set(worker: Worker, tiny_job_params: Params) -> None:
    _queue(worker, {**tiny_job_params, "epochs": 1}, validation=0.25, promote="never")

    done = worker.run_once()

    assert done is not None and done.metrics is not None
    support = sum(c["support"] for c in done.metrics["fusion"]["per_class"].values())
    assert support == 8  # a quarter of the 32 training samples


def test_cancel_while_running_discards_the_model(worker: Worker, tiny_job_params: Params) -> None:
    active = _version_with_metric(worker.models, 0.0)
    job = _queue(worker, {**tiny_job_params, "epochs": 500}, promote="always")
    thread = _run_in_thread(worker)
    _wait_for(_training_started(worker, job.id))

    worker.jobs.request_cancel(job.id)
    thread.join(60)

    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.model_version is None
    assert [v.version for v in worker.models.list_versions()] == [active]
    assert worker.models.active_version() == active


def test_stopping_the_worker_puts_its_job_back_in_the_queue(worker: Worker, tiny_job_params: Params) -> None:
    job = _queue(worker, {**tiny_job_params, "epochs": 500})
    thread = _run_in_thread(worker)
    _wait_for(_training_started(worker, job.id))

    worker.stop()
    thread.join(60)

    again = worker.jobs.get(job.id)
    assert again is not None and again.status is JobStatus.QUEUED and again.started_at is None
    assert worker.models.list_versions() == []


def test_unknown_validation_labels_fail_the_job_with_the_reason(
    worker: Worker, tiny_job_params: Params, tmp_path: Path
) -> None:
    demo, other = tmp_path / "data" / "datasets" / "demo", tmp_path / "data" / "datasets" / "other"
    shutil.copytree(demo / "images", other / "images")
    (other / "train.jsonl").write_text((demo / "dev.jsonl").read_text().replace('"match"', '"neither"'))
    _queue(worker, tiny_job_params, validation="other")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and "validation" in done.error and "unknown_label" in done.error


def test_write_failure_while_saving_leaves_nothing_half_written(
    worker: Worker, tiny_job_params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = _version_with_metric(worker.models, 0.0)

    def disk_full(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("model.checkpoint.save_file", disk_full)
    _queue(worker, {**tiny_job_params, "epochs": 1}, promote="always")

    done = worker.run_once()

    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and "could not save the model" in done.error and "No space" in done.error
    assert sorted(p.name for p in worker.models.versions_dir.iterdir()) == [active]
    assert worker.models.active_version() == active


def test_running_job_of_a_dead_worker_fails_and_the_queue_still_runs(
    worker: Worker, tiny_job_params: Params
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = _queue(worker, tiny_job_params)
    worker.jobs.claim_next(make_worker_id(dead.pid, "gone"))
    waiting = _queue(worker, {**tiny_job_params, "epochs": 1})

    assert worker.recover() == [orphan.id]

    failed = worker.jobs.get(orphan.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and "died" in failed.error
    done = worker.run_once()
    assert done is not None and done.id == waiting.id and done.status is JobStatus.SUCCEEDED


def test_job_of_a_live_worker_is_left_running(worker: Worker, tiny_job_params: Params) -> None:
    job = _queue(worker, tiny_job_params)
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
    job = _queue(worker, tiny_job_params)
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
    active = _version_with_metric(worker.models, 0.0)
    job = _queue(worker, {**tiny_job_params, "epochs": 500}, promote="always")
    thread = _run_in_thread(worker)
    _wait_for(_training_started(worker, job.id))

    # What another worker's recover() does once this one has been silent for STALE_AFTER_S.
    assert worker.jobs.fail_worker_jobs(worker.worker_id, "stopped sending heartbeats") == [job.id]
    thread.join(60)

    assert not thread.is_alive()
    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED and final.model_version is None
    assert final.error == "stopped sending heartbeats"
    assert [v.version for v in worker.models.list_versions()] == [active]
    assert worker.models.active_version() == active


def test_job_declared_dead_while_saving_keeps_its_version_inactive(
    worker: Worker, tiny_job_params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = _version_with_metric(worker.models, 0.0)
    job = _queue(worker, {**tiny_job_params, "epochs": 1}, promote="always")

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


def _job_processes(job_id: str) -> list[int]:
    """Pids of live processes whose command line names the job (its torchrun work directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or gone meanwhile
            continue
        if entry.name.isdigit() and job_id.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow  # torchrun and two training processes start (10-20 s on a busy 2-core machine)
def test_job_with_nproc_2_trains_in_two_processes(worker: Worker, tiny_job_params: Params) -> None:
    job = _queue(worker, {**tiny_job_params, "nproc": 2}, promote="if_better")
    thread = _run_in_thread(worker)
    stages: set[str] = set()
    while thread.is_alive():
        running = worker.jobs.get(job.id)
        if running is not None and running.progress is not None:
            stages.add(running.progress["stage"])
        time.sleep(0.05)

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
    job = _queue(worker, {**tiny_job_params, "epochs": 500, "nproc": 2}, promote="always")
    thread = _run_in_thread(worker)
    _wait_for(_training_started(worker, job.id))
    assert _job_processes(job.id)

    worker.jobs.request_cancel(job.id)
    thread.join(60)

    final = worker.jobs.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.model_version is None
    assert worker.models.list_versions() == []
    assert _job_processes(job.id) == []


@pytest.mark.slow  # a worker process, torchrun and two training processes start
def test_killed_worker_takes_its_training_processes_along(worker: Worker, tiny_job_params: Params) -> None:
    job = _queue(worker, {**tiny_job_params, "epochs": 500, "nproc": 2})
    # A worker process of its own, killed as the OOM killer or the API's supervisor kills one.
    env = child_env(worker.settings, dict(os.environ))
    process = subprocess.Popen([sys.executable, "-m", "service.worker"], env=env)
    try:
        _wait_for(_training_started(worker, job.id), timeout=120)
        assert _job_processes(job.id)
    finally:
        process.kill()
        process.wait()

    try:
        _wait_for(lambda: _job_processes(job.id) == [], timeout=30)
    finally:  # should they outlive the worker after all, they must not train on after the test
        for pid in _job_processes(job.id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_work_folders_of_jobs_not_running_are_removed_at_start(
    worker: Worker, tiny_job_params: Params
) -> None:
    running = _queue(worker, tiny_job_params)
    assert worker.jobs.claim_next("elsewhere:1:a") is not None  # another host's, beating: left running
    failed = _queue(worker, tiny_job_params)
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
    job = _queue(worker, {**tiny_job_params, "nproc": nproc, "batch_size": 2 * nproc})

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
        _run_training_processes(
            [sys.executable, "-c", _NOT_UTF8_OUTPUT],
            "job",
            lambda progress: None,
            lambda: time.monotonic() > deadline,
        )


def test_bad_job_database_url_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FUSION_DATA_DIR": str(tmp_path / "data"),
        "FUSION_MODEL_DIR": str(tmp_path / "models"),
        "FUSION_JOB_DB_URL": "mysql://fusion:s3cret@db.example/fusion",
    }
    command = [sys.executable, "-m", "service.worker"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "FUSION_JOB_DB_URL" in done.stderr and "s3cret" not in done.stderr
