"""Worker ids and telling from them whether a worker process is alive."""

from __future__ import annotations

import os
import subprocess
import sys

from service.worker.identity import make_worker_id, worker_alive


def test_a_live_process_on_this_host_is_alive() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert worker_alive(make_worker_id(process.pid, "t")) is True
    finally:
        process.kill()
        process.wait()
    assert worker_alive(make_worker_id(process.pid, "t")) is False


def test_this_process_id_is_an_earlier_start_that_died() -> None:
    assert worker_alive(make_worker_id(os.getpid(), "earlier")) is False


def test_a_worker_on_another_host_cannot_be_told() -> None:
    assert worker_alive("elsewhere:123:token") is None
    assert worker_alive("not-an-id") is None
