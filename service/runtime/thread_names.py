"""OS thread names for the service's own threads, so ``top -H``, py-spy and the serving benchmark's CPU
breakdown can tell the inference and decode threads from the event loop and the runtimes' pools."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading

_PR_SET_NAME = 15  # linux/prctl.h
_MAX_NAME_BYTES = 15  # the kernel's limit, without the terminating NUL


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def name_os_thread() -> None:
    """Give the calling thread's OS thread its Python name (Linux only; elsewhere, or failing, nothing).

    Python 3.11 leaves every OS thread named after the process, so without this they all read "python".
    """
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None:
        name = threading.current_thread().name.encode("utf-8", "replace")[:_MAX_NAME_BYTES]
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
