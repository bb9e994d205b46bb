"""Child processes: own group, log, readiness, free ports; RSS, CPU per thread, fds, children (`/proc`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"


class ManagedProcess:
    """A child in its own process group, output to a log file, terminated (then killed) by ``stop``."""

    def __init__(self, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.cmd = list(cmd)
        self.log = log
        self._log_file: IO[bytes] = log.open("wb")
        self.started = time.perf_counter()
        # A new session: a Ctrl-C or a kill of the benchmark never leaves this group running (see stop).
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """Process id (and process group id) of the child."""
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the child wrote, for error messages."""
        self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole group, SIGKILL it if the leader is still there after ``grace_s``."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)
        with contextlib.suppress(ProcessLookupError):  # children the leader left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log_file.close()


@contextlib.contextmanager
def managed(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[ManagedProcess]:
    """Run ``cmd`` for the duration of the ``with`` block, whatever ends it."""
    process = ManagedProcess(cmd, env=env, cwd=cwd, log=log)
    try:
        yield process
    finally:
        process.stop()


def wait_until(
    what: str, predicate: Callable[[], bool], timeout_s: float = 60.0, every_s: float = 0.05
) -> None:
    """Poll `predicate` until it is true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _read_stat(path: Path) -> tuple[str, float]:
    """(command name, user + system CPU seconds) from a ``/proc/.../stat`` file."""
    # The command name (field 2) may contain spaces; the numbers start after its closing parenthesis.
    head, tail = path.read_text().rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, all its threads included (Linux ``/proc``)."""
    return _read_stat(Path(f"/proc/{pid}/stat"))[1]


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of ``pid``: thread id -> (OS thread name, user + system CPU seconds so far)."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended between the listing and the read
            threads[int(task.name)] = _read_stat(task / "stat")
    return threads


def wait_ready(server: ManagedProcess, url: str, timeout_s: float) -> float:
    """Poll ``url`` until it answers 200; returns the seconds since the process was started."""
    deadline = server.started + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.cmd} exited with {server.proc.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.perf_counter() - server.started
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` (Linux ``/proc``; the process must be ours or readable)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (0 once it is gone)."""
    try:
        return rss_bytes(pid) / 2**20
    except (OSError, RuntimeError):
        return 0.0


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def stopped(pid: int) -> bool:
    """Whether `pid` is stopped by a signal (state T, e.g. after SIGSTOP)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "T"
    except (OSError, IndexError):
        return False


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
