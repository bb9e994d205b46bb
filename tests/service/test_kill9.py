"""kill -9 at the worst moments, against a real `python -m service` and its worker child.

- the API in the middle of a dataset upload (bytes still arriving);
- the API in the middle of a promotion (the version written, the pointer not yet switched), alone (the
  worker carries on) and together with its worker (a crash of the whole machine);
- the worker while it writes a checkpoint.

The worker is stopped (SIGSTOP, by itself) at the exact call that starts each moment with
`fusion_testkit.service_process.stop_at_env`, so nothing depends on timing. Not repeated here: kill -9
of the worker mid-epoch and of the API mid-job (test_faults, scripts/faults.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.processes import alive, free_port, stopped, wait_until
from fusion_testkit.service_process import (
    ServiceProcess,
    make_versions,
    place_demo_dataset,
    predict_files,
    stop_at_env,
)
from fusion_testkit.zips import demo_zip
from service.runtime.model_store import ModelStore

pytestmark = pytest.mark.slow  # real servers and workers: 25-65 s a test on the 2-core machine

API_KEY = "kill9-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIMEOUT_S = 60.0  # for any one wait (a server start, a tiny job, a worker's exit)
Job = dict[str, Any]


class Site:
    """A store, a data directory and a port; servers started over them, all killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.store = ModelStore(root / "models")
        (self.first,) = make_versions(self.store.root, 1)
        place_demo_dataset(root / "data")
        self.servers: list[ServiceProcess] = []

    def start(self, **env: str) -> ServiceProcess:
        """The API with its worker child; `env` adds variables (a stop point)."""
        settings = {
            "FUSION_API_KEY": API_KEY,
            "FUSION_START_WORKER": "true",
            "FUSION_WORKER_POLL_INTERVAL_S": "0.2",
            "FUSION_MODEL_POLL_INTERVAL_S": "0.2",
            "FUSION_TORCH_THREADS": "1",
            "FUSION_RUNTIME": "torch",
            **env,
        }
        server = ServiceProcess(self.root, self.port, settings)
        self.servers.append(server)
        return server.start()

    @property
    def url(self) -> str:
        return self.servers[-1].url

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def job(self, job_id: str) -> Job:
        job: Job = self.get(f"/jobs/{job_id}")
        return job

    def queue(self, promote: str) -> str:
        body = {"dataset": "demo", "validation": "demo:dev", "params": {**TINY_JOB_PARAMS, "epochs": 1}}
        response = httpx.post(self.url + "/jobs", json={**body, "promote": promote}, headers=AUTH, timeout=30)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def finished(self, job_id: str) -> Job:
        wait_until(f"job {job_id} finished", lambda: self.job(job_id)["status"] not in ("queued", "running"))
        return self.job(job_id)

    def served_version(self) -> str:
        response = httpx.post(self.url + "/predict", files=predict_files(1), timeout=30)
        assert response.status_code == 200, response.text
        version: str = response.json()["model_version"]
        return version

    def listed_versions(self) -> list[str]:
        return [v["version"] for v in self.get("/models")["versions"]]

    def leftovers(self) -> list[str]:
        """Hidden temporary entries in the model store and the datasets folder (a write in progress)."""
        folders = (self.store.versions_dir, self.root / "data" / "datasets")
        return sorted(p.name for folder in folders for p in folder.glob(".*"))

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill_everything()


@pytest.fixture
def site(tmp_path: Path, single_cpu: None) -> Iterator[Site]:
    """A site whose servers, and the workers they start, run on one CPU (see the `single_cpu` fixture)."""
    made = Site(tmp_path)
    try:
        yield made
    finally:
        made.kill_all()


def _stopped_worker(server: ServiceProcess) -> int:
    """The server's worker, once it has stopped itself at its stop point."""
    found: list[int] = []

    def one_stopped() -> bool:
        found[:] = [pid for pid in server.note_workers() if stopped(pid)]
        return bool(found)

    wait_until("the worker at its stop point", one_stopped)
    return found[0]


# ---- the API killed mid-upload --------------------------------------------------------------------------


def test_api_killed_while_an_upload_streams_in_lists_nothing_and_frees_the_name(site: Site) -> None:
    server = site.start()
    archive = demo_zip(site.root / "zip-src", n_per_class=6)
    files = {"file": ("new.zip", archive, "application/zip")}
    request = httpx.Request("POST", server.url + "/datasets", data={"name": "fresh"}, files=files)
    body, content_type = request.read(), request.headers["content-type"]
    half = len(body) // 2
    rest_may_go = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:half]
        rest_may_go.wait(TIMEOUT_S)
        yield body[half:]

    outcome: list[BaseException | int] = []

    def upload() -> None:
        try:
            headers = {**AUTH, "Content-Type": content_type}
            response = httpx.post(server.url + "/datasets", content=slow_body(), headers=headers, timeout=30)
            outcome.append(response.status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    uploader = threading.Thread(target=upload)
    uploader.start()
    staged = site.root / "data" / "datasets"

    def bytes_on_disk() -> bool:
        entries = [*staged.glob(".tmp-upload-*"), *staged.glob(".tmp-upload-*/*")]
        return any(p.is_file() and p.stat().st_size > 0 for p in entries)

    wait_until("upload bytes on disk", bytes_on_disk)
    server.stop(signal.SIGKILL)
    rest_may_go.set()
    uploader.join(TIMEOUT_S)
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome

    site.start()

    assert [d["name"] for d in site.get("/datasets")["datasets"]] == ["demo"]
    assert httpx.get(site.url + "/datasets/fresh", timeout=30).status_code == 404
    assert site.leftovers() == []
    again = httpx.post(site.url + "/datasets", data={"name": "fresh"}, files=files, headers=AUTH, timeout=60)
    assert again.status_code == 201, again.text
    assert again.json()["samples"] == 12


# ---- the API killed mid-promotion ---------------------------------------------------------------------

PROMOTION = "service.runtime.model_store:ModelStore.set_active"  # after validating, before the pointer


def _stopped_before_the_pointer(site: Site) -> tuple[ServiceProcess, int, str, str, str]:
    """A job stopped between writing its version and switching the pointer, and one queued behind it."""
    server = site.start(**stop_at_env(PROMOTION))
    promoting, behind = site.queue("always"), site.queue("never")
    worker = _stopped_worker(server)
    (written,) = [v.version for v in site.store.list_versions() if v.version != site.first]
    site.store.validate(written)  # complete: it loads
    assert site.store.active_version() == site.first
    assert site.job(promoting)["status"] == "running" and site.job(behind)["status"] == "queued"
    return server, worker, promoting, behind, written


def test_api_killed_mid_promotion_the_worker_finishes_it_and_the_queue_is_kept(site: Site) -> None:
    server, worker, promoting, behind, written = _stopped_before_the_pointer(site)

    server.stop(signal.SIGKILL)
    os.kill(worker, signal.SIGCONT)
    wait_until("the orphaned worker gone", lambda: not alive(worker))  # it promotes, then exits

    site.start()
    job = site.job(promoting)
    assert (job["status"], job["promoted"], job["model_version"]) == ("succeeded", True, written)
    assert site.store.active_version() == written
    assert site.served_version() == written
    after = site.finished(behind)
    assert after["status"] == "succeeded" and not after["promoted"]
    assert site.store.active_version() == written
    assert site.leftovers() == []


def test_api_and_worker_killed_mid_promotion_keep_the_old_pointer_and_the_queue(site: Site) -> None:
    server, worker, promoting, behind, written = _stopped_before_the_pointer(site)

    server.stop(signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)  # the whole machine went down

    site.start()
    job = site.finished(promoting)  # failed by the new worker: its old worker is dead
    assert job["status"] == "failed" and "died while running this job" in job["error"]
    assert not job["promoted"] and job["model_version"] is None
    assert site.store.active_version() == site.first
    assert site.served_version() == site.first
    for version in site.listed_versions():  # the written version stays, complete and inactive
        site.store.validate(version)
    assert written in site.listed_versions()
    after = site.finished(behind)
    assert after["status"] == "succeeded" and not after["promoted"]
    assert site.leftovers() == []


# ---- the worker killed while it writes a checkpoint ---------------------------------------------------


def test_worker_killed_while_writing_a_checkpoint_fails_the_job_and_no_half_version_stays(site: Site) -> None:
    # model.checkpoint's first fsync: weights and config.json written into the temp folder, not yet renamed.
    server = site.start(**stop_at_env("model.checkpoint:fsync"))
    doomed = site.queue("always")
    worker = _stopped_worker(server)
    (temp,) = site.store.versions_dir.glob(".*.tmp-*")
    assert sorted(p.name for p in temp.iterdir()) == ["config.json", "model.safetensors"]

    os.kill(worker, signal.SIGKILL)

    job = site.finished(doomed)
    assert job["status"] == "failed" and job["error"] == "worker process exited with signal 9 (SIGKILL)"
    assert job["model_version"] is None and not job["promoted"]
    assert site.listed_versions() == [site.first]
    assert site.store.active_version() == site.first and site.served_version() == site.first
    # The replacement worker removes what the killed one left; its own first save stops at the same point.
    following = site.queue("always")
    replacement = _stopped_worker(server)
    assert replacement != worker and not temp.exists()
    os.kill(replacement, signal.SIGCONT)
    done = site.finished(following)
    assert done["status"] == "succeeded" and done["promoted"]
    assert site.listed_versions() == [site.first, done["model_version"]]
    wait_until("the new version served", lambda: site.served_version() == done["model_version"])
    assert site.leftovers() == []
