"""bench.serve_measure's CPU breakdown: a real child process with named threads, read from /proc."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.serve_measure import cores_by_thread, thread_group
from fusion_testkit.processes import cpu_seconds, thread_cpu_seconds

REPO = Path(__file__).resolve().parents[2]
# Burns CPU in a thread named as the service names its inference threads, then sleeps until killed.
CHILD = textwrap.dedent(
    """
    import threading, time
    from service.runtime.thread_names import name_os_thread

    def burn():
        name_os_thread()
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            pass
        time.sleep(60)

    threading.Thread(target=burn, name="inference-0", daemon=True).start()
    print("started", flush=True)
    time.sleep(60)
    """
)


def test_the_named_threads_cpu_is_counted_under_its_group() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        before, total_before, started = (
            thread_cpu_seconds(child.pid),
            cpu_seconds(child.pid),
            time.perf_counter(),
        )
        time.sleep(2.0)
        after = thread_cpu_seconds(child.pid)
        wall = time.perf_counter() - started
        total = (cpu_seconds(child.pid) - total_before) / wall
        names = {name for name, _ in after.values()}
        assert "inference-0" in names
        cores = cores_by_thread(child.pid, before, after, wall, total)
    finally:
        child.kill()
        child.wait()
    assert set(cores) == {"inference", "decode", "event loop", "other"}
    assert cores["inference"] > 0.3  # the burning thread: most of one core while it burned
    assert cores["event loop"] < 0.1  # the main thread slept
    assert cores["decode"] == 0.0
    assert sum(cores.values()) == pytest.approx(total, abs=1e-6)  # "other" is the rest of the total


def test_thread_groups() -> None:
    assert thread_group(100, "python", 100) == "event loop"
    assert thread_group(101, "inference-1", 100) == "inference"
    assert thread_group(102, "decode_0", 100) == "decode"
    assert thread_group(103, "python", 100) == "other"
    assert thread_group(104, "inference-x", 100) == "other"
