"""Small real filesystems for the disk-full tests: a size-limited tmpfs mounted for a block, and ballast.

Mounting needs root (or CAP_SYS_ADMIN); where it is refused `small_tmpfs` raises `MountUnavailable` with
the reason, so that a test can skip saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

BALLAST = ".ballast"
_CHUNK = b"\0" * 65536


class MountUnavailable(RuntimeError):
    """This process may not mount a tmpfs here; the message says why."""


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` on `path` (created if needed) for the block; unmounted on exit.

    Every process writing there must be gone by the end of the block: a busy mount is detached lazily.
    """
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MountUnavailable(f"cannot run mount: {exc}") from exc
    if result.returncode != 0:
        reason = result.stderr.strip() or f"mount exited with {result.returncode}"
        raise MountUnavailable(f"cannot mount a tmpfs on {path}: {reason}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged write could still use on the filesystem holding `path`."""
    return shutil.disk_usage(path).free


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Grow the ballast file in `path` until at most `leave_bytes` are free there (or the disk is full)."""
    ballast = path / BALLAST
    with ballast.open("ab", buffering=0) as out:
        while (room := free_bytes(path) - leave_bytes) > 0:
            try:
                out.write(_CHUNK[:room])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        os.fsync(out.fileno())
    return ballast


def free(path: Path) -> None:
    """Remove the ballast that `fill` wrote in `path`."""
    (path / BALLAST).unlink(missing_ok=True)
