"""A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free 127.0.0.1 port, for tests and scripts."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fusion_testkit.processes import free_port

# Accounts that may run the server when we are root (initdb and postgres refuse to run as root).
_SERVER_ACCOUNTS = ("postgres", "nobody")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def find_pg_bin() -> Path | None:
    """The directory with initdb and pg_ctl: $FUSION_TEST_PG_BIN, the PATH, or Debian's newest version."""
    candidates = [os.environ.get("FUSION_TEST_PG_BIN", "")]
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    candidates += sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _run(what: str, command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PostgresUnavailable(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")


def _server_account() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs the server binaries, and the account they run as (None: ourselves)."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    for name in _SERVER_ACCOUNTS:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if runuser:
            return [runuser, "-u", name, "--"], account
    raise PostgresUnavailable("running as root and no runuser + postgres/nobody account to run the server as")


class PgServer:
    """A running throwaway cluster: its URL, and a stop and a start (a restart keeps port and data)."""

    def __init__(self, pg_ctl: list[str], root: Path, port: int, durable: bool) -> None:
        self.url = f"postgresql://fusion@127.0.0.1:{port}/postgres"
        self._pg_ctl = pg_ctl
        self._log = root / "server.log"
        self._options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync={'on' if durable else 'off'}"
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        _run(
            "pg_ctl start",
            [*self._pg_ctl, "-l", str(self._log), "-w", "-t", "30", "-o", self._options, "start"],
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: clients are disconnected, as in a restart; `immediate`: a crash)."""
        subprocess.run([*self._pg_ctl, "-m", mode, "-w", "stop"], capture_output=True, check=False)


@contextmanager
def throwaway_server(*, durable: bool = False, parent: Path | None = None) -> Iterator[PgServer]:
    """Start a cluster in a temporary directory (superuser ``fusion``, trust auth); removed on exit.

    ``durable=False`` turns fsync off, which makes tests faster; benchmarks pass True to measure commits
    as a production server makes them. ``parent``: where that directory goes (the system's temporary
    directory by default), e.g. a small filesystem to fill.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; set FUSION_TEST_PG_BIN"
        )
    prefix, account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="fusion-pg-", dir=parent))
    try:
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        data = root / "data"
        initdb = [
            str(bin_dir / "initdb"),
            "-U",
            "fusion",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]
        _run("initdb", [*prefix, *initdb, "-D", str(data)])
        server = PgServer([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)], root, free_port(), durable)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[str]:
    """`throwaway_server`'s URL, for callers that never restart it."""
    with throwaway_server(durable=durable) as server:
        yield server.url
