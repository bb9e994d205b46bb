"""Atomic file writes: a reader sees the old file or the new one, never a half-written one; the temporary
files and folders of writers that died are told apart from writes in progress and removed."""

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


ATOMIC_TEMP_GLOB = ".*.tmp"
"""The temporary siblings `write_atomic` writes (`.<name>.<hex>.tmp`), for `remove_abandoned`."""


def write_atomic(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Write via ``write`` to a temporary sibling, then rename it over ``path``.

    The sibling is made first and its writer's lock (flock) held until the rename, so that after a kill
    `remove_abandoned_writes` removes it and never a write in progress; ``write`` must write into that
    file (open and truncate it), not replace it. With ``durable`` the new file is flushed to disk before
    the rename and the directory after it, so the new content also survives a power cut.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:  # a sweep took it between the open and the lock
            raise FileNotFoundError(errno.ENOENT, "temporary file removed before it was locked", str(tmp))
        write(tmp)
        if durable:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)
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


def remove_abandoned_writes(folder: Path) -> list[str]:
    """Remove the temporary files that `write_atomic` calls left in `folder` or below when their process
    died; their paths relative to `folder`."""
    removed = []
    for parent, _dirs, _files in os.walk(folder):
        here = Path(parent)
        names = remove_abandoned(here, ATOMIC_TEMP_GLOB)
        removed += [str((here / name).relative_to(folder)) for name in names]
    return removed


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
