"""`python -m service.worker`: the entry point's handling of bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
