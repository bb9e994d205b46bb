"""Recognising a write that failed for want of space (a full disk or quota) through any store's errors."""

from __future__ import annotations

import errno
import sqlite3

# The OS errors of a full filesystem and of an exhausted quota.
_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
# PostgreSQL's SQLSTATE for disk_full (class 53, insufficient resources).
_POSTGRES_DISK_FULL = "53100"


def disk_full_reason(exc: BaseException) -> str | None:
    """Why `exc` is a write that ran out of space (the OS, SQLite or PostgreSQL said so), else None.

    Follows the chain of causes, so a store's own error wrapping the OS error is recognised too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ERRNOS:
            return _ERRNOS[current.errno]
        if (
            isinstance(current, sqlite3.Error)
            and getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        ):
            return "the job database's disk is full"
        if getattr(current, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return "the job database server's disk is full"
        current = current.__cause__ or current.__context__
    return None
