"""service.disk_full: which errors are a write that ran out of space (real full disks: test_disk_faults)."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from pathlib import Path

import pytest

from service.disk_full import disk_full_reason


def _sqlite_full(tmp_path: Path) -> sqlite3.Error:
    """The error SQLite raises when a database cannot grow (capped here with max_page_count)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "capped.sqlite3")) as db:
        db.execute("CREATE TABLE t (x BLOB)")
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        try:
            db.execute("INSERT INTO t VALUES (?)", (bytes(100_000),))
        except sqlite3.Error as exc:
            return exc
    raise AssertionError("SQLite wrote past max_page_count")


@pytest.mark.parametrize(
    ("number", "reason"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EDQUOT, "disk quota exceeded")],
)
def test_os_errors_of_a_full_disk_or_quota(number: int, reason: str) -> None:
    assert disk_full_reason(OSError(number, "full")) == reason


def test_a_wrapped_os_error_is_recognised_through_its_cause() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise ValueError("could not save the model") from exc
    except ValueError as wrapped:
        assert disk_full_reason(wrapped) == "no space left on the device"


def test_sqlite_full_is_recognised(tmp_path: Path) -> None:
    error = _sqlite_full(tmp_path)
    assert "full" in str(error)
    assert disk_full_reason(error) == "the job database's disk is full"


def test_other_errors_are_not_disk_full(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite3")
    with contextlib.closing(db), pytest.raises(sqlite3.Error) as syntax:
        db.execute("SELEC 1")
    for exc in (OSError(errno.EIO, "Input/output error"), FileNotFoundError("x"), ValueError(), syntax.value):
        assert disk_full_reason(exc) is None
