"""Runs the training worker as a child process of the API, restarting it when it dies."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from pydantic import SecretStr

from service.runtime.job_db import until_answered
from service.runtime.job_store import JobStore
from service.settings import Settings
from service.worker.identity import make_worker_id
from service.worker.processes import TERMINATE_WAIT_S

log = logging.getLogger(__name__)

_HEALTHY_RUN_S = 60.0
# How long `stop()` gives the worker before killing it: time to stop a job's torchrun (a wait after
# SIGTERM, one after SIGKILL, one for the output to drain: 3 x TERMINATE_WAIT_S at most), notice the
# stop (a poll of 0.5 s) and put the job back in the queue.
_STOP_TIMEOUT_S = 3 * TERMINATE_WAIT_S + 5.0


def child_env(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """`base` plus every setting as a FUSION_* variable, so that a child rebuilds the same Settings."""
    prefix = settings.model_config.get("env_prefix", "")
    keys = {f"{prefix}{name}".upper(): name for name in type(settings).model_fields}
    # Drop inherited values of settings that are unset here, so the child cannot see a different value.
    env = {key: value for key, value in base.items() if key.upper() not in keys}
    for key, name in keys.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[key] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return ",".join(value)  # the form Settings documents for lists (e.g. FUSION_ALLOWED_IMAGE_TYPES)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def describe_exit(returncode: int) -> str:
    """Human wording of a child's exit status, e.g. "worker process exited with signal 9 (SIGKILL)"."""
    if returncode < 0:
        number = -returncode
        try:
            name = f" ({signal.Signals(number).name})"
        except ValueError:
            name = ""
        return f"worker process exited with signal {number}{name}"
    return f"worker process exited with code {returncode}"


class WorkerSupervisor:
    """Spawns `python -m service.worker` with the API's settings and keeps one alive until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        job_store: JobStore,
        *,
        restart_delay_s: float = 1.0,
        max_restart_delay_s: float = 30.0,
        stop_timeout_s: float = _STOP_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.job_store = job_store
        self.restart_delay_s = restart_delay_s
        self.max_restart_delay_s = max_restart_delay_s
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._worker_id: str | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the current child, if one is running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def worker_id(self) -> str | None:
        """Worker id the current child records on the jobs it claims."""
        return self._worker_id

    def start(self) -> None:
        """Spawn the child and the thread that watches it."""
        if self._thread is not None:
            raise RuntimeError("worker supervisor already started")
        self._stopping.clear()
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the child to finish (SIGTERM: its running job goes back to the queue), kill it if it hangs."""
        with self._lock:  # under the lock, so that no restart can slip in after this
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("worker %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _spawn(self) -> bool:
        token = uuid.uuid4().hex[:8]
        env = child_env(self.settings, dict(os.environ))
        command = [sys.executable, "-m", "service.worker", "--worker-token", token, "--exit-with-parent"]
        with self._lock:
            if self._stopping.is_set():
                return False
            # The child inherits stdout/stderr, so its log lines join the API's. Its own session keeps a
            # terminal's Ctrl+C away from it: the API decides when it stops (and it stops if the API dies).
            self._process = subprocess.Popen(command, env=env, start_new_session=True)
            worker_id = make_worker_id(self._process.pid, token)
            self._worker_id = worker_id
            self._started_at = time.monotonic()
        log.info("worker started: pid %s, id %s", self._process.pid, worker_id)
        return True

    def _watch(self) -> None:
        delay = self.restart_delay_s
        while True:
            with self._lock:
                process, worker_id, started_at = self._process, self._worker_id, self._started_at
            assert process is not None and worker_id is not None
            returncode = process.wait()
            if self._stopping.is_set():
                return
            reason = describe_exit(returncode)
            try:  # waits out a restart of the job database, not a full one (the next worker's recovery waits)
                failed = until_answered(
                    functools.partial(self.job_store.fail_worker_jobs, worker_id, reason),
                    given_up=self._stopping.is_set,
                    wait=self._stopping.wait,
                )
                recorded = ", ".join(failed) or "none"
            except Exception as exc:  # e.g. a full job database: the next worker's recovery fails them
                recorded = f"not recorded ({type(exc).__name__}: {exc})"
            log.error("%s (pid %s); jobs failed: %s", reason, process.pid, recorded)
            # Back off while the child keeps dying soon after start; start over after a healthy run.
            if time.monotonic() - started_at > _HEALTHY_RUN_S:
                delay = self.restart_delay_s
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_restart_delay_s)
            self.restarts += 1
            if not self._spawn():
                return
