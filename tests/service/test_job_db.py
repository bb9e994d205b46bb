"""job_db: password masking for logs, and which database a FUSION_JOB_DB_URL opens."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.runtime.job_db import (
    JobDatabaseError,
    JobDatabaseUnavailable,
    SqliteDatabase,
    mask_password,
    open_job_database,
    until_answered,
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://fusion:s3cret@db:5432/jobs", "postgresql://fusion:***@db:5432/jobs"),
        ("postgresql://fusion:p@ss@db/jobs", "postgresql://fusion:***@db/jobs"),
        ("postgresql://:s3cret@db/jobs", "postgresql://:***@db/jobs"),
        (
            "postgresql://db/jobs?password=s3cret&sslmode=require",
            "postgresql://db/jobs?password=***&sslmode=require",
        ),
    ],
)
def test_passwords_are_masked(url: str, masked: str) -> None:
    assert mask_password(url) == masked


@pytest.mark.parametrize("url", ["postgresql://fusion@db/jobs", "postgresql://db/jobs?sslmode=require"])
def test_urls_without_a_password_are_unchanged(url: str) -> None:
    assert mask_password(url) == url


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A bound port that never listens: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("url", [None, "", "   "])
def test_no_url_opens_the_sqlite_file(url: str | None, tmp_path: Path) -> None:
    database = open_job_database(url, tmp_path / "state" / "jobs.sqlite3")

    try:
        assert isinstance(database, SqliteDatabase)
        assert database.path == tmp_path / "state" / "jobs.sqlite3" and database.path.is_file()
    finally:
        database.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///var/lib/jobs.sqlite3", "sqlite:///var/lib/jobs.sqlite3"),
        ("mysql://u:pw@db/jobs", "mysql://u:***@db/jobs"),
        ("db.example.com/jobs", "db.example.com/jobs"),
    ],
)
def test_a_url_that_is_not_postgres_is_refused_in_one_line(url: str, shown: str, tmp_path: Path) -> None:
    with pytest.raises(JobDatabaseError) as raised:
        open_job_database(url, tmp_path / "jobs.sqlite3")

    message = str(raised.value)
    assert message == f"FUSION_JOB_DB_URL={shown} is not a postgresql:// URL (leave it empty for SQLite)"
    assert not (tmp_path / "jobs.sqlite3").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgres_schemes_connect_to_the_server(scheme: str, closed_port: int, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f" {scheme}://fusion:s3cret@127.0.0.1:{closed_port}/jobs "

    with pytest.raises(
        JobDatabaseError, match=r"^cannot connect to FUSION_JOB_DB_URL=postgres(ql)?://fusion:\*\*\*@127"
    ) as raised:
        open_job_database(url, tmp_path / "jobs.sqlite3")

    assert "s3cret" not in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "jobs.sqlite3").exists()


def test_a_password_libpq_cannot_parse_is_not_echoed(closed_port: int, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://fusion:pa%zzss@127.0.0.1:{closed_port}/jobs"  # not valid percent-encoding

    with pytest.raises(JobDatabaseError) as raised:
        open_job_database(url, tmp_path / "jobs.sqlite3")

    assert "zzss" not in str(raised.value)


def test_until_answered_tries_again_while_the_database_is_away_and_stops_when_given_up() -> None:
    answers: list[object] = [JobDatabaseUnavailable("down"), JobDatabaseUnavailable("down"), "done"]
    waits: list[float] = []

    def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert until_answered(call, given_up=lambda: False, wait=waits.append, every_s=0.5) == "done"
    assert waits == [0.5, 0.5]

    def always_down() -> None:
        raise JobDatabaseUnavailable("still down")

    with pytest.raises(JobDatabaseUnavailable, match="still down"):
        until_answered(always_down, given_up=lambda: True, wait=waits.append)
    assert waits == [0.5, 0.5]  # given up at once: no wait
