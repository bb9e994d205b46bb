"""The measuring half of bench/serve_bench.py: the in-process ceiling, and a server under closed-loop load."""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_testkit.processes import HOST, cpu_seconds, managed, rss_bytes, thread_cpu_seconds, wait_ready

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
READY_TIMEOUT_S = 300.0
RSS_CHUNKS = 4


@dataclass(frozen=True)
class CeilingRow:
    """In-process throughput at one (concurrent callers, torch threads each, batch size)."""

    callers: int
    threads: int
    batch_size: int
    throughput: float
    batch_p50_ms: float
    batches: int


@dataclass(frozen=True)
class Ceiling:
    """Every measured row, and the two reference settings measured once more after the service's load.

    The references are the best row (throughput) and the single-item row (one caller, batch 1, lowest
    median). The machine is shared and its speed drifts over a run, so both are measured again right
    after the service's load levels (``best_again``, ``single_again``) and the service is compared with
    the mean of the two measurements, which bracket its own: a steady drift cancels out.
    """

    rows: list[CeilingRow]
    best_again: CeilingRow | None = None
    single_again: CeilingRow | None = None

    @property
    def best(self) -> CeilingRow:
        """The row with the highest throughput."""
        return max(self.rows, key=lambda row: row.throughput)

    @property
    def single(self) -> CeilingRow | None:
        """One caller, batch 1, lowest median: the in-process single-item latency."""
        rows = [row for row in self.rows if row.batch_size == 1 and row.callers == 1]
        return min(rows, key=lambda row: row.batch_p50_ms) if rows else None

    @property
    def reference(self) -> float:
        """Items/s the service is compared with: the best row's mean over its measurements."""
        return statistics.mean(row.throughput for row in (self.best, self.best_again) if row)

    @property
    def single_item_ms(self) -> float:
        """The single-item latency the service is compared with: the mean over its measurements (ms)."""
        rows = [row for row in (self.single, self.single_again) if row]
        return statistics.mean(row.batch_p50_ms for row in rows) if rows else float("nan")

    @property
    def best_one_caller(self) -> CeilingRow | None:
        """The best row with a single caller: the plain in-process number, without overlapping forwards."""
        rows = [row for row in self.rows if row.callers == 1]
        return max(rows, key=lambda row: row.throughput) if rows else None


@dataclass(frozen=True)
class LoadPlan:
    """The load every server gets: the same samples, client counts and timings."""

    workdir: Path
    samples_file: Path
    concurrency: list[int]
    duration_s: float
    warmup_s: float
    rss_requests: int
    rss_concurrency: int


@dataclass
class ServerRun:
    """One server's start-up, load levels and memory."""

    name: str
    ready_s: float
    rss_ready: int
    rss_after_sweep: int = 0
    levels: list[dict[str, Any]] = field(default_factory=list)
    rss_phase: dict[str, Any] | None = None


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries the report)."""
    print(f"[serve_bench] {message}", file=sys.stderr, flush=True)


def _time_batches(
    predictor: Any,
    images: Sequence[bytes],
    texts: Sequence[str],
    *,
    batch_size: int,
    callers: int,
    seconds: float,
) -> tuple[list[float], float]:
    """Seconds per ``predict_batch`` call from ``callers`` threads at once, and the wall time it all took."""
    n = len(images)

    def pick(k: int) -> tuple[list[bytes], list[str]]:
        idx = [(k * batch_size + i) % n for i in range(batch_size)]
        return [images[i] for i in idx], [texts[i] for i in idx]

    predictor.predict_batch(*pick(0))  # the first batch of a new shape pays for allocations
    started = time.perf_counter()

    def caller(first: int) -> list[float]:
        times: list[float] = []
        k = first
        while len(times) < 2 or time.perf_counter() - started < seconds:
            k += callers
            batch_images, batch_texts = pick(k)
            before = time.perf_counter()
            predictor.predict_batch(batch_images, batch_texts)
            times.append(time.perf_counter() - before)
        return times

    # torch releases the GIL inside its kernels, so callers overlap like a server's request threads.
    with ThreadPoolExecutor(callers) as pool:
        per_caller = list(pool.map(caller, range(callers)))
    return [t for times in per_caller for t in times], time.perf_counter() - started


def measure_ceiling(
    predictor_for: Callable[[int], Any],
    images: Sequence[bytes],
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int],
    setups: Sequence[tuple[int, int]],
    seconds: float,
) -> Ceiling:
    """``predict_batch`` on encoded images for ``seconds`` per (callers, threads) and batch size.

    ``predictor_for(threads)`` gives the predictor to call (ONNX Runtime fixes its threads per session).
    """
    rows = [
        measure_row(
            predictor_for(threads),
            images,
            texts,
            callers=callers,
            threads=threads,
            batch_size=size,
            seconds=seconds,
        )
        for callers, threads in setups
        for size in batch_sizes
    ]
    return Ceiling(rows)


def onnx_predictors(checkpoint: Path, runtime: str) -> Callable[[int], Any]:
    """Export the checkpoint's graph (as the worker does), then one warm ONNX session per thread count."""
    from model.export import export_onnx
    from model.onnx_predictor import OnnxPredictor

    int8 = runtime == "onnx-int8"
    export_onnx(checkpoint, quantize="int8" if int8 else None)
    sessions: dict[int, Any] = {}

    def predictor_for(threads: int) -> Any:
        if threads not in sessions:
            sessions[threads] = OnnxPredictor.from_checkpoint(checkpoint, int8=int8, threads=threads)
            sessions[threads].warmup()
        return sessions[threads]

    return predictor_for


def measure_row(
    predictor: Any,
    images: Sequence[bytes],
    texts: Sequence[str],
    *,
    callers: int,
    threads: int,
    batch_size: int,
    seconds: float,
) -> CeilingRow:
    """One ceiling setting: ``callers`` threads with ``threads`` torch threads, batches of ``batch_size``."""
    from model.device import configure_cpu_threads

    configure_cpu_threads(threads)
    times, elapsed = _time_batches(
        predictor, images, texts, batch_size=batch_size, callers=callers, seconds=seconds
    )
    row = CeilingRow(
        callers,
        threads,
        batch_size,
        len(times) * batch_size / elapsed,
        statistics.median(times) * 1000,
        len(times),
    )
    progress(f"ceiling {callers}x{threads} batch={batch_size}: {row.throughput:.1f} items/s")
    return row


def run_loadgen(
    url: str, plan: LoadPlan, env: dict[str, str], concurrency: int, *extra: str
) -> dict[str, Any]:
    """One ``bench.loadgen`` run in its own process; ``extra`` says for how long (duration or requests)."""
    out = plan.workdir / f"loadgen-{concurrency}.json"
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", url, "--samples", str(plan.samples_file)]
    cmd += ["--concurrency", str(concurrency), "--out", str(out), *extra]
    with managed(cmd, env=env, cwd=REPO, log=plan.workdir / "loadgen.log") as client:
        if client.proc.wait() != 0:
            raise RuntimeError(f"loadgen failed ({client.proc.returncode}):\n{client.log_tail()}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def bench_server(
    name: str,
    cmd: Sequence[str],
    port: int,
    env: dict[str, str],
    plan: LoadPlan,
    after_levels: Callable[[], None] | None = None,
) -> ServerRun:
    """Start a server, load it at each concurrency, call ``after_levels``, then the RSS phase (if any)."""
    url = f"http://{HOST}:{port}"
    with managed(cmd, env=env, cwd=plan.workdir, log=plan.workdir / f"{name}.log") as server:
        ready_s = wait_ready(server, f"{url}/health/ready", READY_TIMEOUT_S)
        run = ServerRun(name, ready_s, rss_bytes(server.pid))
        progress(f"{name}: ready in {ready_s:.1f} s, RSS {run.rss_ready / MiB:.0f} MiB")
        for clients in plan.concurrency:
            cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
            threads_before = thread_cpu_seconds(server.pid)
            timing = ("--duration", str(plan.duration_s), "--warmup", str(plan.warmup_s))
            level = run_loadgen(f"{url}/predict", plan, env, clients, *timing)
            # Server CPU over the whole client run (warm-up included), as busy cores.
            wall = time.perf_counter() - wall_before
            level["server_cores"] = (cpu_seconds(server.pid) - cpu_before) / wall
            level["server_cores_by_thread"] = cores_by_thread(
                server.pid, threads_before, thread_cpu_seconds(server.pid), wall, level["server_cores"]
            )
            level["client_cores"] = level["client_cpu_s"] / (plan.warmup_s + level["window_s"])
            run.levels.append(level)
            progress(
                f"{name} c={clients}: {level['throughput']:.1f} req/s, p50 {level['p50_ms']:.1f} ms, "
                f"errors {level['errors']}"
            )
        run.rss_after_sweep = rss_bytes(server.pid)
        if after_levels is not None:
            after_levels()
        if plan.rss_requests > 0 and name == "service":
            run.rss_phase = rss_phase(f"{url}/predict", server.pid, run.rss_after_sweep, env, plan)
    return run


def thread_group(tid: int, name: str, pid: int) -> str:
    """What a server thread is: the main thread runs the event loop; the service names its own threads."""
    if tid == pid:
        return "event loop"
    named = re.fullmatch(r"(inference|decode)[-_]\d+", name)
    return named.group(1) if named else "other"


def cores_by_thread(
    pid: int,
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    wall_s: float,
    total_cores: float,
) -> dict[str, float]:
    """Busy cores per thread group over ``wall_s``; "other" is the rest of the process's total, so it
    also holds threads that ended in the window (runtime pools, the default executor's threads)."""
    groups: dict[str, float] = {"inference": 0.0, "decode": 0.0, "event loop": 0.0}
    for tid, (name, seconds) in after.items():
        group = thread_group(tid, name, pid)
        if group != "other":
            groups[group] += (seconds - before.get(tid, (name, 0.0))[1]) / wall_s
    groups["other"] = max(0.0, total_cores - sum(groups.values()))
    return groups


def rss_phase(url: str, pid: int, rss_before: int, env: dict[str, str], plan: LoadPlan) -> dict[str, Any]:
    """Send ``plan.rss_requests`` requests in ``RSS_CHUNKS`` runs, reading the server's RSS after each."""
    trace = [(0, rss_before)]
    sent = ok = errors = 0
    seconds = 0.0
    for chunk in range(RSS_CHUNKS):
        count = plan.rss_requests * (chunk + 1) // RSS_CHUNKS - sent
        result = run_loadgen(url, plan, env, plan.rss_concurrency, "--requests", str(count))
        sent += count
        ok += result["ok"]
        errors += result["errors"]
        seconds += result["window_s"]
        trace.append((sent, rss_bytes(pid)))
        progress(f"RSS phase: {sent} requests, RSS {trace[-1][1] / MiB:.0f} MiB")
    after = trace[-1][1]
    return {
        "requests": plan.rss_requests,
        "concurrency": plan.rss_concurrency,
        "rss_before": rss_before,
        "rss_after": after,
        "growth_pct": 100.0 * (after - rss_before) / rss_before,
        "trace": trace,
        "throughput": ok / seconds,
        "errors": errors,
    }
