"""Importing the support package, or any script or benchmark, has no side effects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = [
    "fusion_testkit.browser",
    "fusion_testkit.disks",
    "fusion_testkit.factories",
    "fusion_testkit.firefox_relay",
    "fusion_testkit.fuzz",
    "fusion_testkit.jobs",
    "fusion_testkit.pg_cluster",
    "fusion_testkit.processes",
    "fusion_testkit.service_process",
    "fusion_testkit.stats",
    "fusion_testkit.zips",
    "bench.fuzz",
    "bench.job_db_bench",
    "bench.serve_bench",
    "scripts.faults",
    "scripts.load_with_swaps",
    "scripts.lock",
    "scripts.overload",
    "scripts.replicas_check",
    "scripts.soak",
]
CHECK = """
import importlib, signal, sys, threading
handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
path = list(sys.path)
for name in sys.argv[1:]:
    importlib.import_module(name)
changed = [s.name for s, h in handlers.items() if signal.getsignal(s) is not h]
assert not changed, f"signal handlers installed on import: {changed}"
assert sys.path == path, f"sys.path edited on import: {set(sys.path) ^ set(path)}"
assert threading.active_count() == 1, f"threads started on import: {threading.enumerate()}"
print("clean")
"""


def test_imports_install_no_signal_handlers_edit_no_path_start_no_thread() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, *MODULES], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_no_module_imports_a_test_module() -> None:
    """bench/, scripts/ and fusion_testkit/ never import from tests/."""
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("bench", "scripts", "fusion_testkit")
        for path in (REPO / folder).rglob("*.py")
        if any(line.startswith(("from tests", "import tests")) for line in path.read_text().splitlines())
    ]
    assert offenders == []
