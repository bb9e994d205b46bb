"""Atomic file writes: a reader sees the old file or the new one, never a half-written one; the temporary
folders of writers that died are told apart from writes in progress and removed."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's) content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Write via ``write`` to a temporary sibling, then rename it over ``path``.

    With ``durable`` the new file is flushed to disk before the rename and the directory after it, so the
    new content also survives a power cut.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        if durable:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        with contextlib.suppress(OSError):  # some filesystems cannot sync a directory; the rename stands
            fsync(path.parent)


@contextlib.contextmanager
def temp_folder(path: Path, mode: int = 0o777) -> Iterator[Path]:
    """Make the folder `path` (`mode` less the umask) and hold its writer's lock (flock) during the block.

    The kernel drops the lock when the process ends, however it ends (kill -9 included), so
    `remove_abandoned` can tell a dead writer's leftover from a write in progress in any process.
    """
    path.mkdir(mode=mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:  # a sweep took it between the mkdir and the lock
            raise FileNotFoundError(errno.ENOENT, "temporary folder removed before it was locked", str(path))
        yield path
    finally:
        os.close(fd)


def remove_abandoned(folder: Path, pattern: str) -> list[str]:
    """Remove the entries of `folder` matching `pattern` whose writer's lock nobody holds; their names."""
    removed = []
    for path in sorted(folder.glob(pattern)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or a link
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer holds it
            os.close(fd)
            continue
        try:  # removed while holding the lock, so that no writer can take it over meanwhile
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        removed.append(path.name)
    return removed
