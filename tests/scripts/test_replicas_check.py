"""scripts/replicas_check.py: two real replicas on one store both serve a version promoted through one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two uvicorn processes start (about 4 s each on a busy 2-core machine)
def test_both_replicas_serve_the_promoted_version_within_the_limit() -> None:
    """One promotion: the script times each replica until it serves the new version, and exits 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.replicas_check",
            "--rounds",
            "1",
            "--poll-interval",
            "0.2",
            "--limit",
            "10",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    timed = re.search(r"round 1: .* replica 1 ([\d.]+) s, replica 2 ([\d.]+) s", result.stdout)
    assert timed is not None, result.stdout
    assert all(float(seconds) <= 10 for seconds in timed.groups())
    assert "RESULT: ok" in result.stdout
