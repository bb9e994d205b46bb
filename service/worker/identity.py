"""Worker identity and liveness: the id a worker records on its jobs, and whether that worker lives."""

from __future__ import annotations

import os
import socket

# How often a running job's heartbeat is beaten, and after how long a job whose worker (on another host,
# or of unknown pid) has been silent counts as dead.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def make_worker_id(pid: int, token: str) -> str:
    """The id a worker records on the jobs it claims: host, pid and a token unique to this start."""
    return f"{socket.gethostname()}:{pid}:{token}"


def worker_alive(worker_id: str) -> bool | None:
    """Whether the worker process behind `worker_id` is alive; None when that cannot be told from here."""
    host, _, rest = worker_id.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():  # an earlier start of this same process slot (e.g. pid 1 in a container)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
