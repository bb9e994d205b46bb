"""Long fault runs against a real server (with its training worker child), printing each outcome.

1. kill -9 of the worker mid-epoch: the job is failed with the reason, predictions keep answering 200
   the whole time, a new worker starts and the next job runs to success.
2. API restart (SIGTERM) mid-job: the worker stops with it and puts its job back in the queue; after the
   restart the job history and the model store are unchanged and the job runs again.
3. API killed (SIGKILL) mid-job: the orphaned worker notices, puts its job back and exits; after the
   restart the job runs again, history and store unchanged.

    .venv/bin/python -m scripts.faults

Every loop is bounded in time; every process started is killed on exit. Exits non-zero on any surprise.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fusion_testkit.jobs import TINY_JOB_PARAMS
from fusion_testkit.processes import alive, free_port
from fusion_testkit.service_process import (
    ServiceProcess,
    kill_all_on_exit,
    make_versions,
    place_demo_dataset,
    predict_files,
)

Job = dict[str, Any]


class Run:
    """The server's settings and port (kept across restarts), the API key and the outcomes so far."""

    def __init__(self, root: Path, timeout_s: float) -> None:
        self.root = root
        self.key = secrets.token_urlsafe(16)
        self.port = free_port()
        self.timeout_s = timeout_s
        self.auth = {"Authorization": f"Bearer {self.key}"}
        self.outcomes: list[tuple[str, bool, str]] = []
        self.server: ServiceProcess | None = None

    def start_server(self) -> ServiceProcess:
        """(Re)start the API on the same store, data directory and port."""
        settings = {
            "FUSION_API_KEY": self.key,
            "FUSION_START_WORKER": "true",
            "FUSION_WORKER_POLL_INTERVAL_S": "0.2",
            "FUSION_TORCH_THREADS": "1",
        }
        self.server = ServiceProcess(self.root, self.port, settings).start()
        return self.server

    @property
    def http(self) -> httpx.Client:
        """A client for the current server."""
        assert self.server is not None
        return httpx.Client(base_url=self.server.url, timeout=30, headers=self.auth)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        """Record and print one outcome."""
        self.outcomes.append((name, ok, detail))
        print(f"  [{'ok' if ok else 'FAILED'}] {name}{': ' + detail if detail else ''}", flush=True)

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float | None = None) -> bool:
        """Poll `predicate` until true or the timeout; a timeout is recorded as a failed outcome."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        self.check(f"{what} within {timeout_s or self.timeout_s:.0f} s", False)
        return False

    def job(self, job_id: str) -> Job:
        """The job as the API shows it."""
        with self.http as http:
            job: Job = http.get(f"/jobs/{job_id}").json()
        return job

    def queue(self, epochs: int, promote: str = "never") -> str:
        """Queue a tiny-model job on the demo dataset; returns its id."""
        body = {"dataset": "demo", "validation": "demo:dev", "params": {**TINY_JOB_PARAMS, "epochs": epochs}}
        with self.http as http:
            response = http.post("/jobs", json={**body, "promote": promote})
        response.raise_for_status()
        job_id: str = response.json()["id"]
        return job_id

    def training(self, job_id: str) -> bool:
        """Whether the job is running and inside an epoch (past its first step)."""
        job = self.job(job_id)
        progress = job.get("progress") or {}
        return (
            job["status"] == "running" and progress.get("stage") == "training" and progress.get("step", 0) > 0
        )

    def snapshot(self) -> tuple[list[Job], Any]:
        """Every job record and the model listing."""
        with self.http as http:
            jobs = http.get("/jobs", params={"limit": 1000}).json()["jobs"]
            models = http.get("/models").json()
        return jobs, models


class Predictor(threading.Thread):
    """Predicts in a loop (bounded in count and time) and counts answers that are not 200."""

    def __init__(self, url: str, max_requests: int = 100_000, max_seconds: float = 900.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.sent = 0
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while (
                not self.stop_event.is_set()
                and self.sent < self.max_requests
                and time.monotonic() < self.deadline
            ):
                self.sent += 1
                try:
                    response = http.post("/predict", files=predict_files(self.sent))
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                time.sleep(0.01)

    def finish(self) -> None:
        """Stop and wait."""
        self.stop_event.set()
        self.join(60)


def kill_worker_mid_epoch(run: Run) -> None:
    """Scenario 1."""
    print("1. kill -9 of the worker mid-epoch", flush=True)
    server = run.start_server()
    doomed = run.queue(epochs=500)
    if not run.wait("job training", lambda: run.training(doomed)):
        return
    (worker,) = server.note_workers()
    predictor = Predictor(server.url)
    predictor.start()
    time.sleep(1.0)
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    run.wait("job marked failed", lambda: run.job(doomed)["status"] == "failed")
    failed_after = time.monotonic() - killed_at
    error = run.job(doomed)["error"] or ""
    run.check(
        "killed job failed with the reason",
        "signal 9 (SIGKILL)" in error,
        f"{error!r} after {failed_after:.1f} s",
    )
    run.wait("a new worker", lambda: any(pid != worker for pid in server.note_workers()))
    run.check("killed worker is gone", not alive(worker), f"pid {worker}")
    following = run.queue(epochs=2)
    run.wait("next job finished", lambda: run.job(following)["status"] not in ("queued", "running"), 300)
    status = run.job(following)["status"]
    predictor.finish()
    run.check("next job ran", status == "succeeded", status)
    run.check(
        "predictions answered 200 throughout",
        not predictor.failures and predictor.sent > 0,
        f"{predictor.sent} sent, {len(predictor.failures)} failed {predictor.failures[:3]}",
    )


def restart_api_mid_job(run: Run, sig: signal.Signals, number: int) -> None:
    """Scenarios 2 (SIGTERM) and 3 (SIGKILL)."""
    print(f"{number}. API stopped with {sig.name} mid-job, then started again", flush=True)
    assert run.server is not None
    job_id = run.queue(epochs=500)
    if not run.wait("job training", lambda: run.training(job_id)):
        return
    workers = run.server.note_workers()
    jobs_before, models_before = run.snapshot()
    stopped_at = time.monotonic()
    code = run.server.stop(sig)
    run.check("API exited", code is not None, f"exit code {code}")
    run.wait("worker exited after the API", lambda: not any(alive(pid) for pid in workers))
    orphan_s = time.monotonic() - stopped_at
    run.check("no worker left behind", not any(alive(pid) for pid in workers), f"gone {orphan_s:.1f} s after")
    run.start_server()
    jobs_after, models_after = run.snapshot()
    earlier = [job for job in jobs_before if job["id"] != job_id]
    run.check(
        "finished jobs unchanged",
        [job for job in jobs_after if job["id"] != job_id] == earlier,
        f"{len(earlier)} records compared field by field",
    )
    versions = f"{len(models_after['versions'])} versions, active {models_after['active']}"
    run.check("model store unchanged", models_after == models_before, versions)
    status = next(job for job in jobs_after if job["id"] == job_id)["status"]
    run.check("interrupted job back in the queue (not lost)", status in ("queued", "running"), status)
    run.wait("interrupted job running again", lambda: run.training(job_id))
    with run.http as http:
        http.post(f"/jobs/{job_id}/cancel").raise_for_status()
    run.wait("job cancelled", lambda: run.job(job_id)["status"] == "cancelled")
    run.check("interrupted job ran again, then cancelled", run.job(job_id)["status"] == "cancelled")


def main(argv: list[str] | None = None) -> int:
    """Run the three scenarios; print the outcomes; 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for any one step")
    args = parser.parse_args(argv)
    kill_all_on_exit()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        run = Run(Path(tmp), args.timeout)
        make_versions(run.root / "models", 1)
        place_demo_dataset(run.root / "data")
        try:
            kill_worker_mid_epoch(run)
            restart_api_mid_job(run, signal.SIGTERM, 2)
            restart_api_mid_job(run, signal.SIGKILL, 3)
        finally:
            if run.server is not None:
                run.server.stop()
    failed = [name for name, ok, _ in run.outcomes if not ok]
    print(f"outcomes: {len(run.outcomes)} checked, {len(failed)} failed, {time.monotonic() - started:.0f} s")
    print("RESULT: " + ("ok" if not failed else "FAILED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
