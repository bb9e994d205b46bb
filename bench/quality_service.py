"""The default recipe through the service: a dataset folder in the data directory, `POST /jobs`, no params.

Usage: python -m bench.quality_service /path/to/mvsa-single [--compare quality.json]

Starts a real server (`python -m service`, uvicorn, with its training worker) on a fresh data and model
directory, links DATA_DIR into `<data dir>/datasets/mvsa` (a folder placed by hand, as the README
describes), queues `{"dataset": "mvsa:train", "validation": "mvsa:dev", "skip_invalid": true}` with no
`params`, follows the job until it finishes and prints the dev metrics it reports, in the same table as
bench/quality.py. `--compare` takes the file `bench/quality.py --json` wrote and prints the largest
difference per metric; the exit status is 1 when any differs by more than `--tolerance`.
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
JOB = {"dataset": "mvsa:train", "validation": "mvsa:dev", "skip_invalid": True}


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


def compare(reported: dict[str, Any], expected: dict[str, Any]) -> float:
    """Print the largest absolute difference per score between the job's and the script's metrics."""
    worst = 0.0
    for score in SCORES:
        diffs = [
            abs(reported[mode][score] - expected[mode][score])
            for mode in expected
            if expected[mode] is not None and reported.get(mode) is not None
        ]
        print(f"largest |job - quality.py| {score}: {max(diffs):.4f}")
        worst = max(worst, *diffs)
    return worst


def main() -> int:
    """Run the job through a real server and print its metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
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
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                created = client.post("/jobs", json=JOB)
                if created.status_code != 202:
                    print(f"POST /jobs -> {created.status_code}: {created.text}", file=sys.stderr)
                    return 1
                job = follow(client, created.json()["id"], args.timeout)
    if job["status"] != "succeeded":
        print(f"job {job['status']}: {job['error']}", file=sys.stderr)
        return 1
    metrics = job["metrics"]
    print(f"POST /jobs {json.dumps(JOB)} (no params) -> job {job['id']}")
    print(f"params the job ran with: {json.dumps(job['params'], sort_keys=True)}")
    print(f"train rows skipped: {metrics.get('skipped_rows')}; promotion: {metrics['promotion']['reason']}")
    print()
    print(metrics_table(metrics))
    print()
    started, finished = (datetime.fromisoformat(job[key]) for key in ("started_at", "finished_at"))
    wall = (finished - started).total_seconds()
    print(f"job wall time (started -> finished, cold feature cache): {wall:.1f} s")
    if args.compare:
        return int(compare(metrics, json.loads(args.compare.read_text())) > args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
