"""Faults seen through the API: a killed worker, an API restart during a job, corrupted checkpoints and
pointers, and a failing disk while a model is saved.

Covered elsewhere and not repeated: the supervisor failing a killed worker's job and running the next one
(test_worker_supervisor), a SIGTERM'd worker putting its job back in the queue (same), zeroed weights
refused on activate (test_models), a disk-full `save_file` (worker/test_job_run). scripts/faults.py runs
the long versions against a real server.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusion_testkit.factories import VersionFactory, make_jpeg
from service.app import create_app
from service.runtime.model_store import ModelStore
from service.settings import Settings
from service.worker.loop import Worker

ClientFactory = Callable[..., TestClient]
Params = dict[str, Any]


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.05)


def _served_version(client: TestClient) -> str:
    """Predict once; the answer must be a 200 and names the version that made it."""
    files: list[Any] = [("image", ("a.jpg", make_jpeg(), "image/jpeg")), ("text", (None, "still here"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    version: str = response.json()["model_version"]
    return version


def _job(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return job


def _queue(client: TestClient, params: Params, **body: Any) -> str:
    body = {"dataset": "demo", "validation": "demo:dev", "params": params, **body}
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


# ---- the training worker ---------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_killed_mid_epoch_fails_its_job_while_predictions_keep_answering(
    make_client: ClientFactory,
    active_version: str,
    demo_dataset: str,
    tiny_job_params: Params,
    single_cpu: None,
) -> None:
    client = make_client(start_worker=True, device="cpu", worker_poll_interval_s=0.1)
    supervisor = client.app.state.worker_supervisor  # type: ignore[attr-defined]
    job_id = _queue(client, {**tiny_job_params, "epochs": 500})
    _wait_for(lambda: (_job(client, job_id)["progress"] or {}).get("stage") == "training", what="training")
    killed = supervisor.pid

    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60.0
    while True:  # predict at least once after the kill, then until the job is marked failed
        assert _served_version(client) == active_version
        if _job(client, job_id)["status"] != "running":
            break
        assert time.monotonic() < deadline, "the job was never marked failed"
        # Polled like a client would: a loop of back-to-back reads once kept the supervisor's write (marking
        # the job failed) waiting on SQLite for 20 s on a loaded machine.
        time.sleep(0.02)
    _wait_for(lambda: supervisor.pid not in (None, killed), what="worker restart")

    job = _job(client, job_id)
    assert job["status"] == "failed"
    assert job["error"] == "worker process exited with signal 9 (SIGKILL)"
    assert job["model_version"] is None and job["finished_at"] is not None
    assert _served_version(client) == active_version
    assert [v["version"] for v in client.get("/models").json()["versions"]] == [active_version]


def test_api_restart_during_a_job_keeps_history_store_and_the_running_job(
    make_settings: Callable[..., Settings],
    make_client: ClientFactory,
    active_version: str,
    demo_dataset: str,
    tiny_job_params: Params,
    single_cpu: None,
) -> None:
    """The worker runs on its own (as the compose `trainer` does) while the API goes down and comes back."""
    settings = make_settings(device="cpu")
    worker = Worker(settings)
    at_epoch_one, resume = threading.Event(), threading.Event()
    record = worker.jobs.update_progress

    def pause_after_first_epoch(job_id: str, progress: dict[str, Any], history: Any = None) -> None:
        record(job_id, progress, history)
        if history:
            at_epoch_one.set()
            resume.wait(60)

    with TestClient(create_app(settings)) as first:
        done_id = _queue(first, {**tiny_job_params, "epochs": 1}, promote="always")
        worker.run_once()
        finished = _job(first, done_id)
        _wait_for(lambda: _served_version(first) == finished["model_version"], what="promotion")
        worker.jobs.update_progress = pause_after_first_epoch  # type: ignore[method-assign]
        running_id = _queue(first, {**tiny_job_params, "epochs": 3}, promote="always")
        thread = threading.Thread(target=worker.run_once)
        thread.start()
        assert at_epoch_one.wait(60)
        models_before = first.get("/models").json()
    try:
        second = make_client(device="cpu")

        assert _job(second, done_id) == finished
        assert _job(second, running_id)["status"] == "running"
        assert len(_job(second, running_id)["history"]) == 1
        assert second.get("/models").json() == models_before
        assert _served_version(second) == finished["model_version"]
    finally:
        resume.set()
        thread.join(60)
        worker.close()
    final = _job(second, running_id)
    assert final["status"] == "succeeded" and len(final["history"]) == 3
    _wait_for(lambda: _served_version(second) == final["model_version"], what="new version served")


# ---- the model store ---------------------------------------------------------------------------------


def _config_not_json(version_dir: Path) -> None:
    (version_dir / "config.json").write_text('{"format_version": 1, "model_con', encoding="utf-8")


def _weights_deleted(version_dir: Path) -> None:
    (version_dir / "model.safetensors").unlink()


def _weights_cut_in_half(version_dir: Path) -> None:
    weights = version_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


CORRUPTIONS = {
    "config-not-json": _config_not_json,
    "weights-deleted": _weights_deleted,
    "weights-cut-in-half": _weights_cut_in_half,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupted_checkpoint_is_refused_and_the_active_model_stays(
    client: TestClient,
    active_version: str,
    make_version: VersionFactory,
    store: ModelStore,
    corrupt: Callable[[Path], None],
) -> None:
    broken = make_version()
    corrupt(store.version_path(broken))

    response = client.post(f"/models/{broken}/activate")

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_checkpoint", "version")
    assert broken in error["message"] and "Traceback" not in error["message"]
    assert store.active_version() == active_version
    assert client.get("/models/active").json()["version"] == active_version
    assert _served_version(client) == active_version


def test_pointer_moved_to_a_corrupted_version_keeps_the_old_model_serving(
    client: TestClient,
    active_version: str,
    make_version: VersionFactory,
    store: ModelStore,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = make_version()
    _weights_cut_in_half(store.version_path(broken))

    store.set_active(broken)  # as another replica or a hand edit would, without validating it
    _wait_for(lambda: any(broken in r.getMessage() and r.levelname == "WARNING" for r in caplog.records))

    assert client.get("/health/ready").json()["model_version"] == active_version
    assert _served_version(client) == active_version
    restarted = make_client()
    assert restarted.get("/health/live").status_code == 200
    ready = restarted.get("/health/ready")
    assert ready.status_code == 503 and broken in ready.json()["error"]["message"]
    assert restarted.post("/predict", files=[("text", (None, "hi"))]).status_code == 503
    assert restarted.post(f"/models/{active_version}/activate").status_code == 200
    assert _served_version(restarted) == active_version


def test_torn_pointer_file_keeps_the_model_serving_until_activate_repairs_it(
    client: TestClient, active_version: str, store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.active_file.write_text('{"vers', encoding="utf-8")
    _wait_for(lambda: any("active.json" in r.getMessage() for r in caplog.records))

    assert _served_version(client) == active_version
    assert client.post(f"/models/{active_version}/activate").status_code == 200
    assert store.active_version() == active_version
    assert client.get("/models").json()["active"] == active_version


# ---- a failing disk while the worker saves a model ------------------------------------------------------


def _disk_full_writing_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json gets half its bytes, then ENOSPC (the weights were already written)."""
    write_text = Path.write_text

    def failing(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name == "config.json" and ".tmp-" in self.parent.name:
            write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)


def _io_error_on_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything is written and synced, then renaming it into the store fails with EIO."""
    rename = os.rename

    def failing(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if ".tmp-" in os.path.basename(src) and os.path.basename(os.path.dirname(dst)) == "versions":
            raise OSError(errno.EIO, "Input/output error")
        rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing)


WRITE_FAILURES = {
    "disk-full-writing-config": (_disk_full_writing_config, "No space left on device"),
    "io-error-on-rename": (_io_error_on_rename, "Input/output error"),
}


@pytest.mark.parametrize(("inject", "reason"), WRITE_FAILURES.values(), ids=WRITE_FAILURES.keys())
def test_write_failure_while_saving_fails_the_job_and_nothing_half_written_shows(
    make_client: ClientFactory,
    active_version: str,
    demo_dataset: str,
    store: ModelStore,
    tiny_job_params: Params,
    single_cpu: None,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch], None],
    reason: str,
) -> None:
    client = make_client(device="cpu")
    job_id = _queue(client, {**tiny_job_params, "epochs": 1}, promote="always")
    inject(monkeypatch)

    worker = Worker(client.app.state.settings)  # type: ignore[attr-defined]
    try:
        worker.run_once()
    finally:
        worker.close()

    monkeypatch.undo()
    job = _job(client, job_id)
    assert job["status"] == "failed" and job["model_version"] is None and not job["promoted"]
    assert job["error"].startswith("could not save the model: ") and reason in job["error"]
    assert [v["version"] for v in client.get("/models").json()["versions"]] == [active_version]
    assert sorted(p.name for p in store.versions_dir.iterdir()) == [active_version]
    assert store.active_version() == active_version
    assert _served_version(client) == active_version
