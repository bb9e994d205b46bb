"""Disk faults under a real `python -m service` with its worker: a full disk, and corrupt files on disk.

A full disk: each case mounts a small tmpfs where the store under test lives (the data directory with the
job database, the model store, the feature cache), fills it with ballast and checks the answer (507
`insufficient_storage` for a request, the job failed with the reason), that no partial file is left, that
the earlier versions and datasets are intact and that the API keeps serving; then it frees the space,
restarts the service and checks every store (`_assert_consistent`). Where this process may not mount a
tmpfs the cases skip, saying why.

Corrupt files: what tests/service/test_faults.py does not already cover (it corrupts checkpoints and the
pointer under the torch runtime, in-process): the ONNX runtime that a real server uses on CPU, an active
pointer naming a version that is not there, and feature-cache shards of the wrong shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fusion_testkit.disks import MountUnavailable, fill, free, small_tmpfs
from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.pg_cluster import PgServer
from fusion_testkit.processes import free_port, stopped
from fusion_testkit.service_process import (
    ServiceProcess,
    make_versions,
    place_demo_dataset,
    predict_files,
    stop_at_env,
)
from fusion_testkit.zips import zip_folder
from model.atomic import write_atomic
from model.checkpoint import load_checkpoint
from model.demo_data import write_demo_dataset
from service.runtime.model_store import ModelStore

pytestmark = pytest.mark.slow  # each case starts real servers (and most train a job): 15 to 30 s each

Job = dict[str, Any]
StartPostgres = Callable[[Path], contextlib.AbstractContextManager[PgServer]]
MIB = 2**20
STARTUP_S = 120.0
JOB_S = 180.0
SETTINGS = {
    "FUSION_START_WORKER": "true",
    "FUSION_WORKER_POLL_INTERVAL_S": "0.2",
    "FUSION_TORCH_THREADS": "1",
    "FUSION_RUNTIME": "torch",  # no ONNX export of each version on load, except where a case asks for it
}
# A frozen pretrained text encoder, so that the job goes through the feature cache.
CACHED_PARAMS = {
    **TINY_JOB_PARAMS,
    "text_encoder": "minilm",
    "pretrained": True,
    "finetune": "none",
    "epochs": 1,
}


class Site:
    """A test's root (models/, data/, server logs), its tmpfs mounts and servers; all undone at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.models = root / "models"
        self.port = free_port()
        self.env = dict(SETTINGS)
        self.servers: list[ServiceProcess] = []
        self._http: httpx.Client | None = None
        self._mounts = contextlib.ExitStack()

    def mount(self, path: Path, size_bytes: int) -> Path:
        """A tmpfs of `size_bytes` on `path`, unmounted at the end (after every server is gone)."""
        try:
            return self._mounts.enter_context(small_tmpfs(path, size_bytes))
        except MountUnavailable as exc:
            pytest.skip(f"a full disk needs a small tmpfs: {exc}")

    def postgres_on_small_disk(self, size_bytes: int, server_under: StartPostgres) -> Path:
        """A PostgreSQL server (`server_under`, the conftest fixture) whose files live on a tmpfs of
        `size_bytes`, for the service's jobs. Returns the mount.

        The tmpfs is outside the test's directory, which the server's account may not enter; the server
        stops before the unmount.
        """
        disk = Path(tempfile.mkdtemp(prefix="fusion-pg-disk-"))
        self._mounts.callback(disk.rmdir)
        self.mount(disk, size_bytes)
        server = self._mounts.enter_context(server_under(disk))
        self.env["FUSION_JOB_DB_URL"] = server.url
        return disk

    def start(self, probe: str = "/health/ready", **env: str) -> httpx.Client:
        """Start the service (same port, directories and settings as before, plus `env`)."""
        self.env.update(env)
        server = ServiceProcess(self.root, self.port, self.env)
        self.servers.append(server)
        server.start(STARTUP_S, probe=probe)
        if self._http is not None:
            self._http.close()
        self._http = httpx.Client(base_url=server.url, timeout=30)
        return self._http

    def restart(self, probe: str = "/health/ready") -> httpx.Client:
        """Stop the service as an operator would (SIGTERM) and start it again."""
        self.servers[-1].stop()
        return self.start(probe)

    @property
    def http(self) -> httpx.Client:
        """A client of the running service."""
        assert self._http is not None
        return self._http

    def log(self) -> str:
        """Everything the servers and their workers wrote so far."""
        logs = [server.process.log for server in self.servers if server.process is not None]
        return "\n".join(log.read_text(errors="replace") for log in logs)

    def close(self) -> None:
        """Kill every server and worker, then unmount."""
        if self._http is not None:
            self._http.close()
        for server in reversed(self.servers):
            server.kill_everything()
        self._mounts.close()


@pytest.fixture
def site(tmp_path: Path, single_cpu: None) -> Iterator[Site]:
    site = Site(tmp_path)
    try:
        yield site
    finally:
        site.close()


def _until(predicate: Callable[[], bool], what: str, timeout_s: float = JOB_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.1)


def _served(http: httpx.Client) -> str:
    """Predict once: a 200 naming the version that answered."""
    response = http.post("/predict", files=predict_files(1))
    assert response.status_code == 200, response.text
    version: str = response.json()["model_version"]
    return version


def _job_body(params: dict[str, Any], promote: str = "always") -> dict[str, Any]:
    return {"dataset": "demo", "validation": "demo:dev", "params": params, "promote": promote}


def _queue(http: httpx.Client, params: dict[str, Any], promote: str = "always") -> str:
    response = http.post("/jobs", json=_job_body(params, promote))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _job(http: httpx.Client, job_id: str) -> Job:
    job: Job = http.get(f"/jobs/{job_id}").json()
    return job


def _finished(http: httpx.Client, job_id: str) -> Job:
    _until(lambda: _job(http, job_id)["status"] not in ("queued", "running"), f"job {job_id} finished")
    return _job(http, job_id)


def _run_job(http: httpx.Client, params: dict[str, Any], promote: str = "always") -> Job:
    return _finished(http, _queue(http, params, promote))


def _versions(http: httpx.Client) -> list[str]:
    return [v["version"] for v in http.get("/models").json()["versions"]]


def _leftovers(*roots: Path) -> list[str]:
    """Temporary names of every store under `roots`: `.tmp-*` (datasets, checkpoints), `.*.tmp` (the rest)."""
    return sorted(str(p) for root in roots for p in root.rglob("*") if ".tmp" in p.name)


def _assert_consistent(site: Site) -> None:
    """Every store as the (restarted) service sees it: nothing half-written left or listed, all of it whole.

    Datasets, model versions, the active pointer, the job database and the feature cache.
    """
    http = site.http
    assert _leftovers(site.data, site.models) == []
    datasets = http.get("/datasets").json()["datasets"]
    folders = sorted(p.name for p in (site.data / "datasets").iterdir() if not p.name.startswith("."))
    assert [d["name"] for d in datasets] == folders
    assert all(d["error"] is None for d in datasets), datasets
    listing = http.get("/models").json()
    versions = [v["version"] for v in listing["versions"]]
    assert versions == sorted(p.name for p in (site.models / "versions").iterdir())
    for version in versions:
        load_checkpoint(site.models / "versions" / version)
    assert listing["active"] in versions
    assert _served(http) == listing["active"]
    if "FUSION_JOB_DB_URL" not in site.env:
        with contextlib.closing(sqlite3.connect(site.data / "jobs.sqlite3")) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    jobs = http.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert [j["id"] for j in jobs if j["status"] == "running"] == []
    assert all(j["model_version"] in versions for j in jobs if j["status"] == "succeeded")
    for keys in (site.data / "cache" / "features").glob("*/*.json"):
        if keys.name != "encoder.json":
            with safe_open(str(keys.with_suffix(".safetensors")), "pt") as shard:
                rows = shard.get_slice("features").get_shape()[0]
            assert rows == len(json.loads(keys.read_text())["keys"]), keys


def _dataset_zip(workdir: Path, extra: dict[str, bytes]) -> bytes:
    """The demo dataset (6 per class) with `extra` files beside its manifests, as zip bytes."""
    root = write_demo_dataset(workdir, n_per_class=6)
    for name, data in extra.items():
        (root / name).write_bytes(data)
    return zip_folder(root)


def _upload(http: httpx.Client, name: str, archive: bytes) -> httpx.Response:
    return http.post(
        "/datasets", data={"name": name}, files={"file": (f"{name}.zip", archive, "application/zip")}
    )


# ---- a full disk -------------------------------------------------------------------------------------


def test_an_upload_that_fills_the_disk_is_507_and_leaves_nothing(site: Site, tmp_path: Path) -> None:
    site.mount(site.data, 8 * MIB)
    place_demo_dataset(site.data, n_per_class=8)
    make_versions(site.models, 1)
    http = site.start()
    datasets_before = http.get("/datasets").json()
    archives = {
        # Incompressible: the disk runs out while the upload streams in.
        "received": _dataset_zip(tmp_path / "received", {"noise.bin": os.urandom(MIB)}),
        # A few kilobytes zipped: the upload fits, the disk runs out while it is extracted.
        "extracted": _dataset_zip(tmp_path / "extracted", {"padding.txt": bytes(MIB // 2 + MIB // 4)}),
    }
    fill(site.data, leave_bytes=256 * 1024)

    for name, archive in archives.items():
        response = _upload(http, name, archive)

        assert response.status_code == 507, f"{name}: {response.text}"
        error = response.json()["error"]
        assert error["code"] == "insufficient_storage" and "no space left" in error["message"], name
        assert _leftovers(site.data) == [], name
        assert http.get("/datasets").json() == datasets_before, name
    assert "out of storage: [Errno 28] No space left on device" in site.log()
    _served(http)

    free(site.data)
    site.restart()
    _assert_consistent(site)
    assert _upload(site.http, "extracted", archives["extracted"]).status_code == 201


# Where a job writes, how much room it finds there, what it trains, and how its failure must begin.
JOB_WRITES: dict[str, tuple[Callable[[Site], Path], int, dict[str, Any], str]] = {
    "feature-cache": (
        lambda site: site.data / "cache" / "features",
        8 * 1024,
        CACHED_PARAMS,
        "could not write the feature cache: ",
    ),
    "checkpoint": (
        lambda site: site.models,
        4096,
        {**TINY_JOB_PARAMS, "epochs": 1},
        "could not save the model: ",
    ),
}


@pytest.mark.parametrize(("disk", "room", "params", "error"), JOB_WRITES.values(), ids=JOB_WRITES.keys())
def test_a_job_write_that_fills_the_disk_fails_the_job_with_the_reason_and_keeps_the_stores(
    site: Site, disk: Callable[[Site], Path], room: int, params: dict[str, Any], error: str
) -> None:
    full = site.mount(disk(site), 4 * MIB)
    place_demo_dataset(site.data, n_per_class=8)
    (active,) = make_versions(site.models, 1)
    http = site.start()
    fill(full, leave_bytes=room)

    job = _run_job(http, params)

    assert job["status"] == "failed" and job["model_version"] is None and not job["promoted"], job
    assert job["error"].startswith(error) and "No space left on device" in job["error"], job["error"]
    assert _leftovers(full) == []
    assert [p.name for p in (site.models / "versions").iterdir()] == [active]
    assert http.get("/models").json()["active"] == active and _served(http) == active
    free(full)
    site.restart()
    _assert_consistent(site)


def test_a_job_database_that_fills_the_disk_refuses_jobs_and_fails_the_running_one(site: Site) -> None:
    site.mount(site.data, 8 * MIB)
    place_demo_dataset(site.data, n_per_class=8)
    (active,) = make_versions(site.models, 1)
    http = site.start()
    running = _queue(http, {**TINY_JOB_PARAMS, "epochs": 500})
    _until(lambda: len(_job(http, running)["history"]) >= 1, "first epoch recorded")
    fill(site.data)

    refused = http.post("/jobs", json=_job_body(TINY_JOB_PARAMS))

    assert refused.status_code == 507, refused.text
    assert refused.json()["error"]["code"] == "insufficient_storage"
    # The worker's next progress write fails; it records the failure once the database takes writes again.
    _until(lambda: "job database out of space" in site.log(), "worker waiting for space")
    assert _job(http, running)["status"] == "running"
    assert _served(http) == active
    free(site.data)
    job = _finished(http, running)
    assert job["status"] == "failed", job
    assert job["error"].startswith("insufficient storage (the job database's disk is full)"), job["error"]
    assert [j["id"] for j in http.get("/jobs").json()["jobs"]] == [running]
    site.restart()
    _assert_consistent(site)
    assert _job(site.http, running) == job


def test_a_postgres_job_database_whose_disk_fills_refuses_jobs_and_fails_the_running_one(
    site: Site, postgres_server_under: StartPostgres
) -> None:
    pg_disk = site.postgres_on_small_disk(160 * MIB, postgres_server_under)
    place_demo_dataset(site.data, n_per_class=8)
    (active,) = make_versions(site.models, 1)
    # The worker stops itself just before it records the running job's failure. PostgreSQL may take that
    # small update on a "full" disk (the row's page has room), and the worker would then take the jobs queued
    # below and fail them too, on the same full disk, before this test could cancel them.
    http = site.start(**stop_at_env("service.runtime.job_store:JobStore.mark_failed"))
    running = _queue(http, {**TINY_JOB_PARAMS, "epochs": 500})
    _until(lambda: len(_job(http, running)["history"]) >= 1, "first epoch recorded")
    (worker,) = site.servers[-1].note_workers()
    fill(pg_disk)
    # PostgreSQL still takes rows that fit in the free room of pages it has: queue jobs until it refuses.
    accepted: list[str] = []
    while (answer := http.post("/jobs", json=_job_body(TINY_JOB_PARAMS))).status_code == 202:
        accepted.append(answer.json()["id"])
        assert len(accepted) < 500, "PostgreSQL took 500 jobs on a full disk"

    assert answer.status_code == 507, answer.text
    assert answer.json()["error"]["code"] == "insufficient_storage"
    assert "the job database server's disk is full" in answer.json()["error"]["message"]
    # A progress write of the running job failed on the full disk: its failure is next.
    _until(lambda: stopped(worker), "worker about to record the failure")
    assert _job(http, running)["status"] == "running"
    assert _served(http) == active
    free(pg_disk)
    for job_id in accepted:
        cancelled = http.post(f"/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    os.kill(worker, signal.SIGCONT)
    job = _finished(http, running)
    assert job["status"] == "failed", job
    assert job["error"].startswith("insufficient storage (the job database server's disk is full)"), job
    listed = {j["id"]: j["status"] for j in http.get("/jobs", params={"limit": 1000}).json()["jobs"]}
    assert listed == {running: "failed", **dict.fromkeys(accepted, "cancelled")}
    site.restart()
    _assert_consistent(site)
    assert _job(site.http, running) == job


def test_a_worker_that_dies_while_the_job_database_is_full_is_replaced(site: Site) -> None:
    site.mount(site.data, 8 * MIB)
    place_demo_dataset(site.data, n_per_class=8)
    make_versions(site.models, 1)
    http = site.start()
    running = _queue(http, {**TINY_JOB_PARAMS, "epochs": 500})
    _until(lambda: len(_job(http, running)["history"]) >= 1, "first epoch recorded")
    server = site.servers[-1]
    (worker,) = server.note_workers()
    fill(site.data)
    _until(lambda: "job database out of space" in site.log(), "worker waiting for space")

    os.kill(worker, signal.SIGKILL)

    # The supervisor cannot record the death; it starts a new worker, whose recovery waits for space.
    _until(lambda: any(pid != worker for pid in server.note_workers()), "a new worker", timeout_s=60)
    _until(lambda: site.log().count("job database out of space") >= 2, "new worker waiting for space")
    assert "jobs failed: not recorded (OperationalError: database or disk is full)" in site.log()
    free(site.data)
    job = _finished(http, running)
    assert job["status"] == "failed" and job["error"].endswith("died while running this job"), job
    site.restart()
    _assert_consistent(site)


# ---- corrupt files on disk ---------------------------------------------------------------------------


def test_onnx_serving_refuses_a_version_whose_checkpoint_is_corrupt(site: Site) -> None:
    good, truncated, garbled = make_versions(site.models, 3)
    http = site.start(FUSION_RUNTIME="onnx")
    for version in (truncated, garbled, good):  # each served once: each has its ONNX graph beside it
        assert http.post(f"/models/{version}/activate").status_code == 200
    assert (site.models / "versions" / truncated / "model.onnx").is_file()
    weights = site.models / "versions" / truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (site.models / "versions" / garbled / "config.json").write_text('{"format_version": 1, "mod')

    for version in (truncated, garbled):
        response = http.post(f"/models/{version}/activate")

        assert response.status_code == 409, f"{version}: {response.text}"
        assert response.json()["error"]["code"] == "invalid_checkpoint" and version in response.text
        assert _served(http) == good
    assert {v["version"]: v["error"] is not None for v in http.get("/models").json()["versions"]} == {
        good: False,
        truncated: False,  # listed from its config.json; it is refused when loaded
        garbled: True,
    }
    ModelStore(site.models).set_active(truncated)  # as another replica or a hand edit would
    _until(lambda: f"active model version {truncated!r} cannot be loaded" in site.log(), "watcher refusal")
    assert _served(http) == good
    http = site.restart(probe="/health/live")
    ready = http.get("/health/ready")
    assert ready.status_code == 503 and truncated in ready.json()["error"]["message"]
    assert http.post(f"/models/{good}/activate").status_code == 200
    assert _served(http) == good


def test_an_active_pointer_naming_a_missing_version_is_refused_and_the_api_keeps_answering(
    site: Site,
) -> None:
    (active,) = make_versions(site.models, 1)
    http = site.start()
    missing = "20990101-000000-000000-0a0b0c"
    pointer = site.models / "active.json"
    write_atomic(pointer, lambda tmp: tmp.write_text(json.dumps({"version": missing})))

    _until(lambda: f"model version {missing!r} is not in the store" in site.log(), "watcher refusal")
    assert _served(http) == active and http.get("/health/ready").status_code == 200
    listing = http.get("/models").json()
    assert listing["serving"] == active and _versions(http) == [active]
    assert http.get("/models/active").status_code == 404
    http = site.restart(probe="/health/live")
    ready = http.get("/health/ready")
    assert ready.status_code == 503 and missing in ready.json()["error"]["message"]
    assert http.post("/predict", files=predict_files(1)).status_code == 503
    assert http.post(f"/models/{active}/activate").status_code == 200
    _assert_consistent(site)


def _wrong_width(shard: Path) -> None:
    rows = load_file(str(shard))["features"].shape[0]
    save_file({"features": torch.zeros(rows, 7)}, str(shard))


def _cut_in_half(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def test_a_job_meeting_wrong_shaped_cache_shards_encodes_them_again(site: Site) -> None:
    place_demo_dataset(site.data, n_per_class=8)
    make_versions(site.models, 1)
    http = site.start()
    first = _run_job(http, CACHED_PARAMS, promote="never")
    assert first["status"] == "succeeded", first
    shards = sorted((site.data / "cache" / "features").glob("text-*/*.safetensors"))
    assert len(shards) == 2  # the training set's texts and the validation set's new ones
    for shard, corrupt in zip(shards, (_wrong_width, _cut_in_half), strict=True):
        corrupt(shard)

    second = _run_job(http, CACHED_PARAMS, promote="never")

    assert second["status"] == "succeeded", second
    assert second["metrics"]["fusion"] == first["metrics"]["fusion"]  # the same features as the first run
    assert all(str(shard.with_suffix(".json")) in site.log() for shard in shards)
    _assert_consistent(site)
