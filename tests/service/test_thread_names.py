"""name_os_thread: the OS sees the Python thread's name, cut to the kernel's 15 bytes."""

from __future__ import annotations

import threading
from pathlib import Path

from service.runtime.thread_names import name_os_thread


def _os_name_in_thread(name: str) -> str:
    seen: list[str] = []

    def body() -> None:
        name_os_thread()
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    thread = threading.Thread(target=body, name=name)
    thread.start()
    thread.join(10)
    return seen[0]


def test_the_os_thread_takes_the_python_name() -> None:
    assert _os_name_in_thread("inference-3") == "inference-3"


def test_a_long_name_is_cut_to_fifteen_bytes() -> None:
    assert _os_name_in_thread("a-name-longer-than-the-kernel-keeps") == "a-name-longer-t"


def test_other_threads_keep_their_names() -> None:
    before = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text()
    _os_name_in_thread("elsewhere")
    assert Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text() == before
