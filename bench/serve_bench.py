"""Serving benchmark: the in-process ceiling, the service and a naive FastAPI server, one model, one machine.

``python -m bench.serve_bench [--quick] [--device cpu|cuda] [--checkpoint DIR] [--data MANIFEST]`` from the
repository root. Phases, in order:

1. ceiling: ``Predictor.predict_batch`` on image bytes + text (decode, preprocess, forward) in this
   process, at several batch sizes and torch thread counts; the best throughput and the single-item
   latency (median) are the references.
2. service: ``python -m service`` on 127.0.0.1 with a temporary model store; closed-loop load from a
   separate process (``bench.loadgen``) at each concurrency; the two reference settings measured
   again in this process (the service idle), and the mean of both measurements taken as the
   reference; then an RSS phase of ``--requests-for-rss``.
3. naive: ``bench.naive_server`` (decode + forward inside a plain handler) under the same load.

Every server and client runs in its own process group and is stopped on any exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.processes import HOST, cpu_seconds, free_port, managed, rss_bytes, wait_ready

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "mvsa-single" / "dev.jsonl"
MiB = 1024 * 1024
READY_TIMEOUT_S = 300.0
RSS_CHUNKS = 4
UNTRAINED_NOTE = (
    "default architecture with pretrained encoders and an untrained head: "
    "inference cost is the same as a trained model's"
)


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


def _progress(message: str) -> None:
    print(f"[serve_bench] {message}", file=sys.stderr, flush=True)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ``finally`` blocks that stop the children


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
    predictor: Any,
    images: Sequence[bytes],
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int],
    setups: Sequence[tuple[int, int]],
    seconds: float,
) -> Ceiling:
    """``predict_batch`` on encoded images for ``seconds`` per (callers, torch threads) and batch size."""
    rows = [
        measure_row(
            predictor, images, texts, callers=callers, threads=threads, batch_size=size, seconds=seconds
        )
        for callers, threads in setups
        for size in batch_sizes
    ]
    return Ceiling(rows)


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
    _progress(f"ceiling {callers}x{threads} batch={batch_size}: {row.throughput:.1f} items/s")
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
        _progress(f"{name}: ready in {ready_s:.1f} s, RSS {run.rss_ready / MiB:.0f} MiB")
        for clients in plan.concurrency:
            cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
            timing = ("--duration", str(plan.duration_s), "--warmup", str(plan.warmup_s))
            level = run_loadgen(f"{url}/predict", plan, env, clients, *timing)
            # Server CPU over the whole client run (warm-up included), as busy cores.
            level["server_cores"] = (cpu_seconds(server.pid) - cpu_before) / (
                time.perf_counter() - wall_before
            )
            level["client_cores"] = level["client_cpu_s"] / (plan.warmup_s + level["window_s"])
            run.levels.append(level)
            _progress(
                f"{name} c={clients}: {level['throughput']:.1f} req/s, p50 {level['p50_ms']:.1f} ms, "
                f"errors {level['errors']}"
            )
        run.rss_after_sweep = rss_bytes(server.pid)
        if after_levels is not None:
            after_levels()
        if plan.rss_requests > 0 and name == "service":
            run.rss_phase = rss_phase(f"{url}/predict", server.pid, run.rss_after_sweep, env, plan)
    return run


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
        _progress(f"RSS phase: {sent} requests, RSS {trace[-1][1] / MiB:.0f} MiB")
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


def render(ceiling: Ceiling, service: ServerRun, naive: ServerRun | None, header: Sequence[str]) -> str:
    """The markdown report: context, ceiling table, load table, summary."""
    lines = [
        *header,
        "",
        "### Ceiling: in-process `Predictor.predict_batch` (decode + preprocess + forward)",
        "",
    ]
    lines += ["| callers | torch threads | batch | items/s | batch p50 ms |", "|---:|---:|---:|---:|---:|"]
    for row in ceiling.rows:
        mark = " **best**" if row is ceiling.best else ""
        lines.append(
            f"| {row.callers} | {row.threads} | {row.batch_size} | {row.throughput:.1f}{mark} "
            f"| {row.batch_p50_ms:.1f} |"
        )
    lines += ["", "### Load: closed loop from a separate client process", ""]
    lines += [
        "| server | clients | req/s | p50 ms | p95 ms | p99 ms | errors | ÷ ceiling | service ÷ naive "
        "| server CPU (cores) | client CPU (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naive_levels = {lvl["concurrency"]: lvl for lvl in naive.levels} if naive else {}
    runs = [run for run in (service, naive) if run is not None]
    for run in runs:
        for lvl in run.levels:
            other = naive_levels.get(lvl["concurrency"]) if run is service else None
            vs_naive = (
                f"{lvl['throughput'] / other['throughput']:.2f}" if other and other["throughput"] else "—"
            )
            lines.append(
                f"| {run.name} | {lvl['concurrency']} | {lvl['throughput']:.1f} | {lvl['p50_ms']:.1f} "
                f"| {lvl['p95_ms']:.1f} | {lvl['p99_ms']:.1f} | {lvl['errors']} "
                f"| {lvl['throughput'] / ceiling.reference:.2f} | {vs_naive} "
                f"| {lvl['server_cores']:.2f} | {lvl['client_cores']:.2f} |"
            )
    best = ceiling.best
    lines += ["", "### Summary", ""]
    again = ceiling.best_again
    lines.append(
        f"- ceiling: {best.throughput:.1f} items/s at batch {best.batch_size}, {best.callers} caller(s) with "
        f"{best.threads} torch thread(s) each"
        + (f"; {again.throughput:.1f} measured again after the service's load levels" if again else "")
        + f"; reference (mean): {ceiling.reference:.1f} items/s"
    )
    if ceiling.single is not None:
        single_again = ceiling.single_again
        lines.append(
            f"- single-item latency (median of batch-1 calls, 1 caller, {ceiling.single.threads} torch "
            f"thread(s)): {ceiling.single.batch_p50_ms:.1f} ms"
            + (f"; {single_again.batch_p50_ms:.1f} ms measured again" if single_again else "")
            + f"; reference (mean): {ceiling.single_item_ms:.1f} ms"
        )
    one = ceiling.best_one_caller
    if one is not None and one is not best:
        at32 = next((lvl for lvl in service.levels if lvl["concurrency"] == 32), None)
        lines.append(
            f"- ceiling with one caller only: {one.throughput:.1f} items/s at batch {one.batch_size} with "
            f"{one.threads} torch thread(s)"
            + (f"; service at 32 clients ÷ that: {at32['throughput'] / one.throughput:.2f}" if at32 else "")
        )
    single = next((lvl for lvl in service.levels if lvl["concurrency"] == 1), None)
    if single is not None:
        lines.append(
            "- service p50 at 1 client minus ceiling single-item latency: "
            f"{single['p50_ms'] - ceiling.single_item_ms:+.1f} ms"
        )
    for run in runs:
        lines.append(
            f"- {run.name}: ready {run.ready_s:.1f} s after start; RSS {run.rss_ready / MiB:.0f} MiB when "
            f"ready, {run.rss_after_sweep / MiB:.0f} MiB after the load levels"
        )
        if run.rss_phase:
            p = run.rss_phase
            lines.append(
                f"- {run.name} RSS over {p['requests']} more requests at {p['concurrency']} clients: "
                f"{p['rss_before'] / MiB:.0f} -> {p['rss_after'] / MiB:.0f} MiB ({p['growth_pct']:+.1f}%), "
                f"{p['throughput']:.1f} req/s, {p['errors']} errors; RSS after each quarter: "
                + ", ".join(f"{rss / MiB:.0f}" for _, rss in p["trace"][1:])
                + " MiB"
            )
    return "\n".join([*lines, "", "### Targets of issue 6", "", *target_lines(ceiling, service, naive)])


def target_lines(ceiling: Ceiling, service: ServerRun, naive: ServerRun | None) -> list[str]:
    """Each "done when" criterion with the measured value and PASS / FAIL (or n/a when not measured)."""
    levels = {lvl["concurrency"]: lvl for lvl in service.levels}
    naive_levels = {lvl["concurrency"]: lvl for lvl in naive.levels} if naive else {}
    at32, naive32, at1 = levels.get(32), naive_levels.get(32), levels.get(1)
    rss = service.rss_phase
    checks = [
        (
            "service at 32 clients >= 0.85 x ceiling",
            at32 and at32["throughput"] / ceiling.reference,
            lambda v: v >= 0.85,
            "{:.2f} x",
        ),
        (
            "service at 32 clients >= 1.5 x naive",
            at32 and naive32 and naive32["throughput"] and at32["throughput"] / naive32["throughput"],
            lambda v: v >= 1.5,
            "{:.2f} x",
        ),
        (
            "p50 at 1 client within 3 ms of the single-item latency",
            at1 and at1["p50_ms"] - ceiling.single_item_ms,
            lambda v: v <= 3.0,
            "{:+.1f} ms",
        ),
        (
            f"RSS grows < 5% over {rss['requests'] if rss else 'N'} requests",
            rss and rss["growth_pct"],
            lambda v: v < 5.0,
            "{:+.1f}%",
        ),
        ("ready within 10 s of start", service.ready_s, lambda v: v <= 10.0, "{:.1f} s"),
    ]
    lines = []
    for name, value, passes, fmt in checks:
        if value is None or value is False or math.isnan(value):
            lines.append(f"- {name}: n/a")
        else:
            lines.append(f"- {name}: {fmt.format(value)} **{'PASS' if passes(value) else 'FAIL'}**")
    return lines


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _setups(text: str) -> list[tuple[int, int]]:
    """``"1x1,1x2,2x1"`` -> [(callers, threads), ...]."""
    pairs = [part.strip().lower().split("x") for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected CALLERSxTHREADS,... got {text!r}")
    return [(int(callers), int(threads)) for callers, threads in pairs]


SERVICE_KNOBS = (
    "max_batch_size",
    "max_wait_ms",
    "max_queue",
    "decode_threads",
    "inference_threads",
    "torch_threads",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="manifest (.jsonl/.csv) or dataset dir"
    )
    parser.add_argument("--samples", type=int, help="use only the first N samples (default: all)")
    parser.add_argument(
        "--checkpoint", type=Path, help="checkpoint dir (default: the untrained default model)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds per phase")
    parser.add_argument("--duration", type=float, help="measured seconds per load level (default 20)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each level (default 3)")
    parser.add_argument("--concurrency", type=_ints, help="client counts (default 1,8,32,64)")
    parser.add_argument("--batch-sizes", type=_ints, help="ceiling batch sizes (default 1,4,8,16,32,64)")
    parser.add_argument(
        "--ceiling-setups",
        type=_setups,
        help="ceiling CALLERSxTHREADS list: concurrent predict_batch callers, torch threads each "
        "(default on CPU: 1x1, 1xN and Nx1 for N CPUs)",
    )
    parser.add_argument("--ceiling-seconds", type=float, help="seconds per ceiling setting (default 8)")
    parser.add_argument("--requests-for-rss", type=int, help="service RSS phase, requests (default 20000)")
    parser.add_argument("--rss-concurrency", type=int, default=32, help="clients in the RSS phase")
    parser.add_argument("--skip-naive", action="store_true", help="do not benchmark the naive server")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    for knob in SERVICE_KNOBS:
        flag = knob.replace("_", "-")
        parser.add_argument(f"--{flag}", dest=knob, help=f"the service's FUSION_{knob.upper()}")
    return parser


def _fill_defaults(args: argparse.Namespace, cpus: int, device: str) -> None:
    for name, full, smoke in (
        ("duration", 20.0, 2.0),
        ("warmup", 3.0, 0.5),
        ("concurrency", [1, 8, 32, 64], [1, 8, 32, 64]),
        ("batch_sizes", [1, 4, 8, 16, 32, 64], [1, 4]),
        ("ceiling_seconds", 8.0, 1.0),
        ("requests_for_rss", 20_000, 300),
    ):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.quick else full)
    if args.ceiling_setups is None:
        cpu_setups = [(1, 1), (1, cpus), (cpus, 1)]
        args.ceiling_setups = [(1, cpus)] if device == "cuda" else list(dict.fromkeys(cpu_setups))


def _prepare_store(
    checkpoint: Path | None, store_root: Path, labels: tuple[str, ...], fingerprint: str
) -> Path:
    """The checkpoint as the active version of a fresh model store; returns its directory."""
    from model.checkpoint import save_checkpoint
    from model.config import ModelConfig
    from model.fusion import FusionClassifier
    from service.runtime.model_store import ModelStore

    store = ModelStore(store_root)
    path = store.new_version_path()
    if checkpoint is not None:
        shutil.copytree(checkpoint, path)
    else:
        model = FusionClassifier.build(ModelConfig(labels=labels))
        extra = {"source": "serve_bench, untrained head"}
        save_checkpoint(path, model, metrics={}, dataset_fingerprint=fingerprint, extra=extra)
    store.activate(path.name)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Run every phase and print the markdown report on stdout."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    args = _parser().parse_args(argv)

    import torch

    from model.datasets import load_dataset
    from model.device import available_cpus, resolve_device
    from model.predictor import Predictor
    from service.settings import Settings

    device = resolve_device(args.device).type
    cpus = available_cpus()
    _fill_defaults(args, cpus, device)
    knobs = {knob: getattr(args, knob) for knob in SERVICE_KNOBS if getattr(args, knob) is not None}
    # What the service will run with: the same validation, no .env (the server runs in a clean directory).
    settings = Settings(_env_file=None, **knobs)  # type: ignore[call-arg]
    load_at_start = os.getloadavg()[0]
    dataset = load_dataset(args.data, skip_invalid=True)
    samples = dataset.samples[: args.samples] if args.samples else dataset.samples
    images = [s.image.read_bytes() for s in samples]
    texts = [s.text for s in samples]

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        workdir = Path(tmp)
        checkpoint = _prepare_store(args.checkpoint, workdir / "models", dataset.labels, dataset.fingerprint)
        samples_file = workdir / "samples.json"
        samples_file.write_text(json.dumps([{"image": str(s.image), "text": s.text} for s in samples]))

        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        predictor.warmup()
        config = predictor.config
        ceiling = measure_ceiling(
            predictor,
            images,
            texts,
            batch_sizes=args.batch_sizes,
            setups=args.ceiling_setups,
            seconds=args.ceiling_seconds,
        )

        plan = LoadPlan(
            workdir,
            samples_file,
            args.concurrency,
            args.duration,
            args.warmup,
            args.requests_for_rss,
            args.rss_concurrency,
        )
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
        service_env = {
            **env,
            "FUSION_MODEL_DIR": str(workdir / "models"),
            "FUSION_DATA_DIR": str(workdir / "data"),
            "FUSION_DEVICE": device,
            "FUSION_START_WORKER": "false",  # training is not part of serving
            **{f"FUSION_{knob.upper()}": str(value) for knob, value in knobs.items()},
        }
        port = free_port()
        service_cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port)]

        def measure_again(row: CeilingRow) -> CeilingRow:
            return measure_row(
                predictor,
                images,
                texts,
                callers=row.callers,
                threads=row.threads,
                batch_size=row.batch_size,
                seconds=args.ceiling_seconds,
            )

        def measure_references_again() -> None:
            nonlocal ceiling
            single = ceiling.single
            ceiling = dataclasses.replace(
                ceiling,
                best_again=measure_again(ceiling.best),
                single_again=measure_again(single) if single else None,
            )

        service = bench_server("service", service_cmd, port, service_env, plan, measure_references_again)
        naive = None
        if not args.skip_naive:
            port = free_port()
            naive_cmd = [sys.executable, "-m", "bench.naive_server", "--checkpoint", str(checkpoint)]
            naive_cmd += ["--host", HOST, "--port", str(port), "--device", device]
            naive = bench_server("naive", naive_cmd, port, env, plan)

    model = f"image {config.image_encoder}, text {config.text_encoder}, fusion {config.fusion}, "
    model += f"{config.image_size} px; " + (
        UNTRAINED_NOTE if args.checkpoint is None else str(args.checkpoint)
    )
    serving = settings.inference_plan(device)
    header = [
        f"## Serving benchmark ({'quick smoke run' if args.quick else 'full run'})",
        "",
        f"- machine: {cpus} CPU(s), device {device}, torch {torch.__version__}; load average "
        f"{load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        f"- model: {model}",
        f"- data: {len(samples)} photos + captions from {args.data}",
        f"- load: {args.duration:g} s measured after {args.warmup:g} s warm-up per level; closed loop, "
        "httptools client on uvloop in a separate process, keep-alive, multipart `image` + `text`",
        f"- service settings: max_batch_size={serving.max_batch_size}, "
        f"max_wait_ms={settings.max_wait_ms:g}, max_queue={settings.max_queue}, "
        f"decode threads={serving.decode_threads}, inference threads={serving.inference_threads}, "
        f"torch threads={serving.torch_threads}",
    ]
    print(render(ceiling, service, naive, header))
    if args.json is not None:
        references = {"reference": ceiling.reference, "single_item_ms": ceiling.single_item_ms}
        results = {
            "ceiling": {**asdict(ceiling), **references},
            "service": asdict(service),
            "naive": naive and asdict(naive),
        }
        args.json.write_text(json.dumps({"args": vars(args), **results}, indent=2, default=str))


if __name__ == "__main__":
    main()
