"""The database under JobStore: a SQLite file (default) or a PostgreSQL server behind one small interface."""

from __future__ import annotations

import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from service.disk_full import disk_full_reason

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)
T = TypeVar("T")

URL_SETTING = "FUSION_JOB_DB_URL"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# How often a write that must not be lost is tried again while the job database does not answer.
RETRY_S = 2.0
# Any fixed number: every JobStore on one PostgreSQL database takes the same transaction-level lock.
_WRITE_LOCK_KEY = 0x6A6F6273


class JobDatabaseError(RuntimeError):
    """The job database cannot be used (bad URL, unreachable server); the message is one line."""


class JobDatabaseUnavailable(JobDatabaseError):
    """The job database does not answer right now (a server restarting, a network cut): a later call may."""


def until_answered(
    call: Callable[[], T],
    *,
    given_up: Callable[[], bool],
    wait: Callable[[float], object] = time.sleep,
    every_s: float = RETRY_S,
    while_full: bool = False,
) -> T:
    """`call()`, tried again every `every_s` while the job database does not answer (and, `while_full`,
    while its disk is full), until it works or `given_up()` (then the last error is raised): for writes
    that must not be lost."""
    waited = False
    while True:
        try:
            result = call()
        except Exception as exc:
            if isinstance(exc, JobDatabaseUnavailable):
                state = "unavailable"
            elif while_full and disk_full_reason(exc) is not None:
                state = "out of space"
            else:
                raise
            if given_up():
                raise
            if not waited:
                log.warning("job database %s (%s); retrying every %.0f s", state, exc, every_s)
                waited = True
            wait(every_s)
            continue
        if waited:
            log.info("the job database takes writes again")
        return result


class Cursor(Protocol):
    """The result of one statement: rows readable by column name, and the number of rows it changed."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the statement."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


class Connection(Protocol):
    """Runs SQL written with ``?`` placeholders; outside ``transaction()`` every statement commits alone."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        ...


class JobDatabase(ABC):
    """Short-lived connections and write transactions on one job database, plus its few dialect words."""

    #: Column type of floating-point columns (timestamps).
    real_type: str

    @abstractmethod
    def connect(self) -> AbstractContextManager[Connection]:
        """A connection in autocommit mode, safe to use from any thread or process."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction that holds the database-wide write lock (one writer at a time)."""

    @abstractmethod
    def column_names(self, conn: Connection, table: str) -> set[str]:
        """Names of the columns of a table."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections this object holds; the database stays usable by others."""


class SqliteDatabase(JobDatabase):
    """One SQLite file in WAL mode; every call opens its own short-lived connection."""

    real_type = "REAL"

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets the API read while a worker writes progress. This idle connection stays open because
        # SQLite checkpoints (and fsyncs) whenever the last connection closes: 10+ ms on every write.
        self._keeper = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False)
        self._keeper.execute("PRAGMA journal_mode=WAL").fetchall()
        self._keeper.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()  # a read opens the WAL

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection (connections cost microseconds here, and are never shared between threads)."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: takes the write lock up front, so read-then-update sequences are atomic."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def column_names(self, conn: Connection, table: str) -> set[str]:
        """Columns from ``PRAGMA table_info``."""
        return {row["name"] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}

    def close(self) -> None:
        """Close the idle connection that spares each write a checkpoint."""
        self._keeper.close()


class _PostgresConnection:
    """A psycopg connection that accepts the ``?`` placeholders the job SQL is written with."""

    def __init__(self, conn: psycopg.Connection[DictRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        """Run one statement; the job SQL holds no literal ``?`` or ``%``, so the swap is exact."""
        return self._conn.execute(sql.replace("?", "%s"), args)


class PostgresDatabase(JobDatabase):
    """A PostgreSQL database shared by API replicas and workers on any host, through a small pool."""

    real_type = "DOUBLE PRECISION"

    def __init__(self, url: str, *, max_connections: int = 8, connect_timeout_s: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise JobDatabaseError(
                f"{URL_SETTING} names PostgreSQL but {exc.name} is not installed"
                " (pip install 'fusion-service[postgres]')"
            ) from None
        self.url = url
        self._operational_error = psycopg.OperationalError  # connection lost, server gone, pool timeout
        # One direct connection first: the pool would only report a timeout, not why the server refused.
        try:
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout_s))).close()
        except psycopg.Error as exc:
            reason = _without_password(" ".join(str(exc).split()), url)
            raise JobDatabaseError(
                f"cannot connect to {URL_SETTING}={mask_password(url)}: {reason}"
            ) from None
        self._pool: ConnectionPool[psycopg.Connection[DictRow]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # A connection broken by a server restart is replaced instead of failing the next call.
            check=ConnectionPool.check_connection,
            timeout=connect_timeout_s,
            name="job-db",
            open=True,
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection, autocommit; JobDatabaseUnavailable while the server does not answer."""
        with self._unavailable(), self._pool.connection() as conn:
            yield _PostgresConnection(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction holding an advisory lock that every job-store transaction takes first."""
        with self._unavailable(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_KEY,))
            yield _PostgresConnection(conn)

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Connection failures (no connection within the pool's timeout, one lost mid-statement) as
        JobDatabaseUnavailable; the pool replaces broken connections, so a later call works again.

        A full disk on the server (SQLSTATE 53100, also an OperationalError) is not an outage: it goes up
        as it is, and is answered like SQLite's (507 `insufficient_storage`; the worker waits for space)."""
        try:
            yield
        except self._operational_error as exc:
            if disk_full_reason(exc) is not None:
                raise
            reason = _without_password(" ".join(str(exc).split()), self.url)
            raise JobDatabaseUnavailable(f"the job database does not answer: {reason}") from exc

    def column_names(self, conn: Connection, table: str) -> set[str]:
        """Columns from ``information_schema`` (of the schema first on the search path)."""
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {row["column_name"] for row in rows}

    def close(self) -> None:
        """Close the pool's connections (and its threads)."""
        self._pool.close()


def mask_password(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for logs and error messages."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and all(key != "password" for key, _ in query):
        return url  # as given: rebuilding would also normalise it (``sqlite:///x`` -> ``sqlite:/x``)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    masked = [(key, "***" if key == "password" else value) for key, value in query]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="*")))


def _without_password(text: str, url: str) -> str:
    """``text`` (a libpq error) with the URL's password masked: libpq echoes what it cannot parse."""
    text = text.replace(url, mask_password(url))
    password = urlsplit(url).password
    for form in {password, unquote(password)} if password else ():
        text = text.replace(form, "***")
    return text


def open_job_database(url: str | None, sqlite_path: Path) -> JobDatabase:
    """PostgreSQL for a ``postgresql://`` URL; the SQLite file at ``sqlite_path`` when the URL is empty."""
    if not url or not url.strip():
        return SqliteDatabase(sqlite_path)
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme not in POSTGRES_SCHEMES:
        raise JobDatabaseError(
            f"{URL_SETTING}={mask_password(url)} is not a postgresql:// URL (leave it empty for SQLite)"
        )
    # libpq takes the scheme in lower case only (``PostgreSQL://`` would be read as key=value pairs).
    return PostgresDatabase(scheme + url[len(scheme) :])
