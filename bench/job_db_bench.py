"""Latency of the job database on each backend: N x (create + get + update_progress), SQLite vs PostgreSQL.

SQLite uses a temporary file. PostgreSQL uses `--url` (e.g. a server on another host), or else a throwaway
local cluster with fsync on (fusion_testkit/pg_cluster.py; needs the server binaries). Also prints what
opening a PostgreSQL connection per call would add, the alternative to the pool that JobStore uses.

    .venv/bin/python -m bench.job_db_bench --n 200
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion_testkit.pg_cluster import throwaway_cluster
from service.runtime.job_db import mask_password, open_job_database
from service.runtime.job_store import JobStore

OPERATIONS = ("create", "get", "update_progress")


def _timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return (time.perf_counter() - start) * 1000, result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_store(store: JobStore, n: int) -> dict[str, list[float]]:
    """Milliseconds of each operation over `n` rounds; progress goes to one running job, as a worker's."""
    running = store.create("bench")
    store.claim_next("bench-worker")
    times: dict[str, list[float]] = {name: [] for name in OPERATIONS}
    for i in range(n):
        elapsed, job = _timed(store.create, f"d{i}", params={"i": i})
        times["create"].append(elapsed)
        times["get"].append(_timed(store.get, job.id)[0])
        progress = {"stage": "training", "epoch": i, "step": i * 10}
        times["update_progress"].append(_timed(store.update_progress, running.id, progress)[0])
    return times


def _report(label: str, times: dict[str, list[float]]) -> None:
    total = sum(sum(values) for values in times.values())
    cells = "  ".join(
        f"{name} {statistics.fmean(v):.2f}/{_percentile(v, 0.5):.2f}/{_percentile(v, 0.95):.2f}"
        for name, v in times.items()
    )
    print(f"{label:<22} total {total:8.1f} ms   mean/p50/p95 ms: {cells}")


def _connect_cost_ms(url: str, n: int) -> float:
    import psycopg

    return statistics.fmean(_timed(lambda: psycopg.connect(url).close())[0] for _ in range(n))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on both backends and print one line per backend."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="rounds of create + get + update_progress")
    parser.add_argument("--url", help="PostgreSQL URL (default: a throwaway local cluster)")
    args = parser.parse_args(argv)
    print(f"{args.n} rounds of create + get + update_progress (one running job receives the progress)")

    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.closing(JobStore(Path(tmp) / "jobs.sqlite3")) as store,
    ):
        _report("sqlite (WAL, file)", bench_store(store, args.n))

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(throwaway_cluster(durable=True))
        store = JobStore(open_job_database(url, Path("unused")))
        stack.callback(store.close)
        print(f"postgresql: {mask_password(url)}")
        _report("postgresql (pool)", bench_store(store, args.n))
        print(f"opening a connection per call would add {_connect_cost_ms(url, args.n):.2f} ms to each call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
