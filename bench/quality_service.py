"""The default recipe through the service: a dataset folder in the data directory, `POST /jobs`, no params.

Usage: python -m bench.quality_service /path/to/mvsa-single [--seeds 0,1,2] [--compare quality.json]

Starts a real server (`python -m service`, uvicorn, with its training worker) on a fresh data and model
directory, links DATA_DIR into `<data dir>/datasets/mvsa` (a folder placed by hand, as the README
describes), and per seed queues `{"dataset": "mvsa:train", "test": "mvsa:dev", "skip_invalid": true}`:
no validation named, so the job carves its stratified validation slice out of train.jsonl, and dev.jsonl
is the test split, which decides nothing. Seed 0 sends no `params` at all (the default recipe as is);
other seeds send only `{"seed": N}`. It follows each job until it finishes and prints the test metrics it
reports, in the same table as bench/quality.py. The first job starts with a cold feature cache, the
later ones reuse it. `--compare` takes the file `bench/quality.py --json` wrote and prints the largest
difference per metric of the same seeds; the exit status is 1 when any differs by more than
`--tolerance`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.quality import SCORES, metrics_table
from fusion_testkit.processes import HOST, free_port, managed, wait_ready

API_KEY = "quality-bench-key"
JOB: dict[str, Any] = {"dataset": "mvsa:train", "test": "mvsa:dev", "skip_invalid": True}


def follow(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll the job until it reaches a final state; print its stage changes on stderr."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").raise_for_status().json()
        stage = (job["status"], (job["progress"] or {}).get("stage"))
        if stage != last:
            print(f"[{time.strftime('%H:%M:%S')}] job {job['status']} {stage[1] or ''}", file=sys.stderr)
            last = stage
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} not finished after {timeout_s:.0f} s")


def compare(reported: dict[int, dict[str, Any]], expected: dict[str, Any]) -> float:
    """Print the largest absolute difference per score between the jobs' and the script's test metrics."""
    runs = {run["seed"]: run["test"] for run in expected["runs"]["fusion"]}
    worst = 0.0
    for score in SCORES:
        diffs = [
            abs(test[mode][score] - runs[seed][mode][score])
            for seed, test in reported.items()
            if seed in runs
            for mode in test
            if test[mode] is not None and runs[seed].get(mode) is not None
        ]
        print(f"largest |job - quality.py| {score}: {max(diffs):.4f}")
        worst = max(worst, *diffs)
    return worst


def main() -> int:
    """Run the job through a real server and print its metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, one job each (default 0)")
    parser.add_argument("--compare", type=Path, help="metrics JSON written by bench/quality.py --json")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest accepted difference")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the job")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="quality-service-") as tmp:
        root = Path(tmp)
        (root / "data" / "datasets").mkdir(parents=True)
        (root / "data" / "datasets" / "mvsa").symlink_to(args.data_dir.resolve())
        port = free_port()
        env = {
            **os.environ,
            "FUSION_DATA_DIR": str(root / "data"),
            "FUSION_MODEL_DIR": str(root / "models"),
            "FUSION_PORT": str(port),
            "FUSION_API_KEY": API_KEY,
            "FUSION_START_WORKER": "true",
            "FUSION_DEVICE": "cpu",
        }
        command = [sys.executable, "-m", "service"]
        with managed(command, env=env, cwd=Path.cwd(), log=root / "server.log") as server:
            base = f"http://{HOST}:{port}"
            wait_ready(server, f"{base}/health/live", timeout_s=60)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            tests: dict[int, dict[str, Any]] = {}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                for seed in (int(s) for s in args.seeds.split(",")):
                    body = {**JOB, "params": {"seed": seed}} if seed else JOB
                    job = run_job(client, body, args.timeout, cold=not tests)
                    if job is None:
                        return 1
                    tests[seed] = job["metrics"]["test"]
    if args.compare:
        return int(compare(tests, json.loads(args.compare.read_text())) > args.tolerance)
    return 0


def run_job(
    client: httpx.Client, body: dict[str, Any], timeout_s: float, *, cold: bool
) -> dict[str, Any] | None:
    """Queue one job, follow it to its end and print what it reports; None when it did not succeed."""
    created = client.post("/jobs", json=body)
    if created.status_code != 202:
        print(f"POST /jobs -> {created.status_code}: {created.text}", file=sys.stderr)
        return None
    job = follow(client, created.json()["id"], timeout_s)
    if job["status"] != "succeeded":
        print(f"job {job['status']}: {job['error']}", file=sys.stderr)
        return None
    metrics = job["metrics"]
    print(f"POST /jobs {json.dumps(body)} -> job {job['id']}")
    print(f"params the job ran with: {json.dumps(job['params'], sort_keys=True)}")
    print(f"train rows skipped: {metrics.get('skipped_rows')}; promotion: {metrics['promotion']['reason']}")
    print(
        f"validation (the carved slice; chose the epoch and the promotion): fusion accuracy"
        f" {metrics['fusion']['accuracy']:.4f}, best epoch {metrics['best_epoch']}"
    )
    print("test split (mvsa:dev, decided nothing):")
    print()
    print(metrics_table(metrics["test"]))
    print()
    started, finished = (datetime.fromisoformat(job[key]) for key in ("started_at", "finished_at"))
    wall = (finished - started).total_seconds()
    print(f"job wall time (started -> finished, {'cold' if cold else 'warm'} feature cache): {wall:.1f} s")
    print(flush=True)
    return job


if __name__ == "__main__":
    sys.exit(main())
