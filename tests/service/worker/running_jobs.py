"""Helpers of the worker tests: queue a job, record an active version, run the worker and wait on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion_testkit.factories import build_tiny_model
from model.checkpoint import save_checkpoint
from service.runtime.job_record import Job
from service.runtime.model_store import ModelStore
from service.schemas.jobs import TrainParams
from service.worker.loop import Worker

Params = dict[str, Any]


def queue(worker: Worker, params: Params, **kwargs: Any) -> Job:
    """Queue a job on the demo dataset (validation demo:dev unless given)."""
    kwargs.setdefault("validation", "demo:dev")
    return worker.jobs.create("demo", params=TrainParams(**params).recorded(), **kwargs)


def version_with_metric(store: ModelStore, macro_f1: float) -> str:
    """An active version whose recorded validation macro_f1 is `macro_f1`."""
    model = build_tiny_model(labels=("negative", "positive"))
    path = save_checkpoint(
        store.new_version_path(),
        model,
        metrics={"fusion": {"macro_f1": macro_f1, "accuracy": macro_f1}},
        dataset_fingerprint="test",
    )
    store.activate(path.name)
    return path.name


def run_in_thread(worker: Worker) -> threading.Thread:
    """Start `worker.run_once()` in a thread."""
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    return thread


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until `predicate()` holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def training_started(worker: Worker, job_id: str) -> Callable[[], bool]:
    """A predicate: the job reports the training stage."""

    def check() -> bool:
        job = worker.jobs.get(job_id)
        return job is not None and job.progress is not None and job.progress["stage"] == "training"

    return check


def job_processes(job_id: str) -> list[int]:
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
