"""Test only: stops a process (SIGSTOP to itself) the first time it calls one chosen function.

This folder goes on the PYTHONPATH of a real server started by a test (`fusion_testkit.service_process
.stop_at_env`), so that Python imports this module at the start of every process there. Where
`TESTKIT_STOP_IN` names the module the process runs (`python -m service.worker`), the function named by
`TESTKIT_STOP_AT` (`module:Qualified.name`) is wrapped: its first call stops the whole process just
before the call, the test sees it stopped (`/proc`, state T) at that exact point, does what it came to
do (kill -9 someone) and resumes it (SIGCONT) or kills it. Without both variables nothing is imported.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import signal
from pathlib import Path
from typing import Any


def _runs_module(name: str) -> bool:
    """Whether this process was started as `python -m <name>`."""
    try:
        argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (b"-m", name.encode()) in itertools.pairwise(argv)


def _install(target: str) -> None:
    module_name, _, qualname = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, attr)
    stopped = False

    @functools.wraps(original)
    def stop_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal stopped
        if not stopped:
            stopped = True
            os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    setattr(owner, attr, stop_first)


_TARGET, _IN = os.environ.get("TESTKIT_STOP_AT"), os.environ.get("TESTKIT_STOP_IN")
if _TARGET and _IN and _runs_module(_IN):
    _install(_TARGET)
