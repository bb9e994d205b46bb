"""Soak: an hour of steady predictions with a training job and a promotion every ten minutes; memory,
file descriptors and latency watched per window.

Starts the real service (`python -m service` with its training worker, SQLite job database) over a
temporary store whose first version is the default architecture (EfficientNet-Lite0 + MiniLM, pretrained
encoders, untrained head), uploads a small generated dataset, then for `--duration` seconds:

- sends predictions open-loop at a fixed `--rate` (a request is sent when it is due, whatever the earlier
  ones are doing), each a real photo and its caption from `--data`; a latency counts from the moment the
  request was due, so a stalled server cannot hide its backlog;
- every `--job-every` seconds (the first at once) queues a training job of the default recipe on that
  dataset with `promote: always` (one promotion, hence one hot swap, per job);
- every `--sample-every` seconds reads the resident memory and the open file descriptors of the API
  process and of its worker from /proc.

It prints one line per `--window` seconds (requests, errors, p50/p99 latency, RSS and fds at the window's
end), the jobs, and the least-squares slope per hour of RSS and fds over the steady part of the run
(after the first window and after the first job has finished: the first model load and the first
feature encoding are one-off growth, not a leak).

    .venv/bin/python -m scripts.soak                                   # one hour, 25 req/s
    .venv/bin/python -m scripts.soak --duration 240 --job-every 90 --window 60

Exits non-zero unless: every prediction answered 200 on time, every job succeeded and was promoted, the
worker was never replaced, and each slope is within its bound (`--max-rss-slope`, `--max-fd-slope`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import secrets
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fusion_testkit.processes import free_port, open_fds, rss_bytes
from fusion_testkit.service_process import ServiceProcess, kill_all_on_exit
from fusion_testkit.stats import percentile
from fusion_testkit.zips import demo_zip

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "mvsa-single" / "dev.jsonl"
MiB = 2**20
DATASET = "soak"
LABELS = ("negative", "positive")  # the generated dataset's labels
READY_TIMEOUT_S = 600.0  # the first start exports the default model's ONNX graph on two busy cores
JOB_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Answer:
    """One prediction: when it was due (seconds into the run), how long it took, what came back."""

    due_s: float
    latency_s: float
    error: str  # "" for a 200
    version: str = ""


@dataclass(frozen=True)
class Sample:
    """Resident memory (MiB) and open file descriptors of the API and of its worker at one moment."""

    t_s: float
    server_rss_mib: float
    server_fds: int
    worker_pid: int | None
    worker_rss_mib: float | None
    worker_fds: int | None


@dataclass
class JobOutcome:
    """One training job of the run."""

    id: str
    queued_s: float
    finished_s: float | None = None
    status: str = "queued"
    promoted: bool = False
    version: str | None = None
    error: str | None = None
    served_after_s: float | None = None  # from the job's end to the first prediction naming its version


@dataclass(frozen=True)
class Window:
    """What one window of the run saw (requests counted by the time they were due)."""

    start_s: float
    end_s: float
    requests: int
    errors: int
    error_kinds: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_rss_mib: float | None
    server_fds: int | None
    worker_rss_mib: float | None
    worker_fds: int | None


@dataclass
class Run:
    """Everything the run collected."""

    answers: list[Answer] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    jobs: list[JobOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# ---- the pure parts: windows and slopes ----------------------------------------------------------------


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per hour; NaN with fewer than two times."""
    n = len(points)
    if n < 2:
        return float("nan")
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return float("nan")
    return 3600.0 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def windows(
    answers: Sequence[Answer], samples: Sequence[Sample], window_s: float, duration_s: float
) -> list[Window]:
    """Answers grouped by the window they were due in; each window's last sample of RSS and fds."""
    count = max(1, int(-(-duration_s // window_s)))  # ceil: a last, shorter window holds the remainder
    by_window: list[list[Answer]] = [[] for _ in range(count)]
    for answer in answers:
        by_window[min(count - 1, int(answer.due_s // window_s))].append(answer)
    rows = []
    for index, group in enumerate(by_window):
        start, end = index * window_s, min(duration_s, (index + 1) * window_s)
        latencies = sorted(1000 * a.latency_s for a in group if not a.error)
        kinds = collections.Counter(a.error for a in group if a.error)
        inside = [s for s in samples if start <= s.t_s < end or (index == count - 1 and s.t_s >= end)]
        last = inside[-1] if inside else None
        rows.append(
            Window(
                start_s=start,
                end_s=end,
                requests=len(group),
                errors=sum(kinds.values()),
                error_kinds=dict(kinds),
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                max_ms=percentile(latencies, 100),
                server_rss_mib=last.server_rss_mib if last else None,
                server_fds=last.server_fds if last else None,
                worker_rss_mib=last.worker_rss_mib if last else None,
                worker_fds=last.worker_fds if last else None,
            )
        )
    return rows


def steady_slopes(samples: Sequence[Sample], settle_s: float) -> dict[str, float]:
    """Slope per hour of each series over the samples taken at or after `settle_s`."""
    steady = [s for s in samples if s.t_s >= settle_s]
    series: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for s in steady:
        series["server_rss_mib"].append((s.t_s, s.server_rss_mib))
        series["server_fds"].append((s.t_s, s.server_fds))
        if s.worker_rss_mib is not None and s.worker_fds is not None:
            series["worker_rss_mib"].append((s.t_s, s.worker_rss_mib))
            series["worker_fds"].append((s.t_s, s.worker_fds))
    names = ("server_rss_mib", "server_fds", "worker_rss_mib", "worker_fds")
    return {name: slope_per_hour(series[name]) for name in names}


# ---- the load, the jobs and the sampler ----------------------------------------------------------------


def predict_bodies(data: Path, limit: int) -> list[list[tuple[str, Any]]]:
    """Multipart /predict bodies: the real photos and captions of a manifest (its first `limit` samples)."""
    from model.datasets import load_dataset

    samples = load_dataset(data, skip_invalid=True).samples[:limit]
    return [
        [("image", (s.image.name, s.image.read_bytes(), "image/jpeg")), ("text", (None, s.text))]
        for s in samples
    ]


async def predictions(
    http: httpx.AsyncClient,
    run: Run,
    bodies: list[list[tuple[str, Any]]],
    rate: float,
    duration_s: float,
    started: float,
    max_in_flight: int,
) -> None:
    """Open loop: request i is sent at `started + i / rate`, whether or not the earlier ones answered."""
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        try:
            response = await http.post("/predict", files=bodies[index % len(bodies)])
        except httpx.HTTPError as exc:
            run.answers.append(Answer(due - started, loop.time() - due, type(exc).__name__))
            return
        latency = loop.time() - due
        if response.status_code != 200:
            error = f"HTTP {response.status_code} {response.text[:100]}"
            run.answers.append(Answer(due - started, latency, error))
            return
        run.answers.append(Answer(due - started, latency, "", response.json()["model_version"]))

    index = 0
    while (due := started + index / rate) < started + duration_s:
        await asyncio.sleep(max(0.0, due - loop.time()))
        if len(in_flight) >= max_in_flight:
            run.answers.append(Answer(due - started, 0.0, f"not sent: {max_in_flight} requests in flight"))
        else:
            task = asyncio.create_task(one(index, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        index += 1
    if in_flight:
        await asyncio.wait(in_flight)


async def one_job(http: httpx.AsyncClient, run: Run, number: int, started: float) -> None:
    """Queue one default-recipe job (its own seed) with `promote: always` and follow it to its end."""
    loop = asyncio.get_running_loop()
    body = {
        "dataset": DATASET,
        "validation": f"{DATASET}:dev",
        "params": {"seed": number},
        "promote": "always",
    }
    response = await http.post("/jobs", json=body)
    if response.status_code != 202:
        run.problems.append(f"job {number} not queued: {response.status_code} {response.text[:200]}")
        return
    outcome = JobOutcome(response.json()["id"], loop.time() - started)
    run.jobs.append(outcome)
    deadline = loop.time() + JOB_TIMEOUT_S
    while loop.time() < deadline:
        await asyncio.sleep(1.0)
        with contextlib.suppress(httpx.HTTPError):
            job = (await http.get(f"/jobs/{outcome.id}")).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                outcome.finished_s = loop.time() - started
                outcome.status, outcome.promoted = job["status"], bool(job["promoted"])
                outcome.version, outcome.error = job["model_version"], job["error"]
                return
    outcome.status = f"not finished after {JOB_TIMEOUT_S:.0f} s"


async def jobs(http: httpx.AsyncClient, run: Run, every_s: float, duration_s: float, started: float) -> None:
    """A job at once, then one on every `every_s` beat that falls inside the run (after the previous ends)."""
    loop = asyncio.get_running_loop()
    number = 0
    while (beat := started + number * every_s) < started + duration_s:
        await asyncio.sleep(max(0.0, beat - loop.time()))
        await one_job(http, run, number, started)
        number += 1


def sample(server: ServiceProcess, t_s: float) -> Sample:
    """RSS and fds of the server and of its (one) worker now."""
    workers = server.note_workers()
    worker = workers[0] if len(workers) == 1 else None
    worker_rss = worker_fds = None
    if worker is not None:
        with contextlib.suppress(OSError, RuntimeError):  # the worker may be exiting this instant
            worker_rss, worker_fds = rss_bytes(worker) / MiB, open_fds(worker)
    return Sample(t_s, rss_bytes(server.pid) / MiB, open_fds(server.pid), worker, worker_rss, worker_fds)


async def sampler(
    server: ServiceProcess, run: Run, every_s: float, duration_s: float, started: float
) -> None:
    """A sample on every `every_s` beat, the last one at the end of the run."""
    loop = asyncio.get_running_loop()
    beat = started
    while beat <= started + duration_s:
        await asyncio.sleep(max(0.0, beat - loop.time()))
        run.samples.append(sample(server, loop.time() - started))
        beat += every_s


async def soak(
    server: ServiceProcess, key: str, bodies: list[list[tuple[str, Any]]], args: argparse.Namespace
) -> Run:
    """The predictions, the jobs and the sampler together for `args.duration` seconds."""
    run = Run()
    limits = httpx.Limits(max_connections=args.max_in_flight, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=args.request_timeout, limits=limits) as http,
        httpx.AsyncClient(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as admin,
    ):
        started = asyncio.get_running_loop().time()
        await asyncio.gather(
            predictions(http, run, bodies, args.rate, args.duration, started, args.max_in_flight),
            jobs(admin, run, args.job_every, args.duration, started),
            sampler(server, run, args.sample_every, args.duration, started),
        )
    return run


# ---- setting up and reporting --------------------------------------------------------------------------


def prepare_store(model_dir: Path) -> str:
    """The default architecture with pretrained encoders and an untrained head as the active version."""
    from model.checkpoint import save_checkpoint
    from model.config import ModelConfig
    from model.fusion import FusionClassifier
    from service.runtime.model_store import ModelStore

    store = ModelStore(model_dir)
    path = store.new_version_path()
    model = FusionClassifier.build(ModelConfig(labels=LABELS))
    save_checkpoint(path, model, metrics={}, dataset_fingerprint="soak, untrained head")
    store.activate(path.name)
    return path.name


def upload_dataset(server: ServiceProcess, key: str, workdir: Path, per_class: int) -> None:
    """The generated demo dataset (`per_class` training samples per label) uploaded as `soak`."""
    archive = demo_zip(workdir, n_per_class=per_class)
    with httpx.Client(base_url=server.url, timeout=300) as http:
        response = http.post(
            "/datasets",
            data={"name": DATASET},
            files={"file": ("soak.zip", archive, "application/zip")},
            headers={"Authorization": f"Bearer {key}"},
        )
    response.raise_for_status()


def note_swaps(run: Run) -> None:
    """Each promoted job's delay until a prediction first named its version."""
    for job in run.jobs:
        if job.promoted and job.finished_s is not None:
            named = [a.due_s + a.latency_s for a in run.answers if a.version == job.version]
            job.served_after_s = min(named) - job.finished_s if named else None


def settle_time(run: Run, window_s: float) -> float:
    """Where the steady part starts: after the first window and after the first job ended."""
    first_end = run.jobs[0].finished_s if run.jobs and run.jobs[0].finished_s is not None else 0.0
    return max(window_s, first_end)


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def report(
    run: Run, rows: list[Window], slopes: dict[str, float], settle_s: float, args: argparse.Namespace
) -> list[str]:
    """Print the windows, the jobs and the slopes; returns the failed checks."""
    headers = ["window s", "requests", "errors", "p50 ms", "p99 ms", "max ms"]
    headers += ["API RSS MiB", "API fds", "worker RSS MiB", "worker fds"]
    print("  ".join(f"{h:>11}" for h in headers))
    for w in rows:
        cells = [f"{w.start_s:.0f}-{w.end_s:.0f}", str(w.requests), str(w.errors), _fmt(w.p50_ms)]
        cells += [_fmt(w.p99_ms), _fmt(w.max_ms), _fmt(w.server_rss_mib), _fmt(w.server_fds, "d")]
        cells += [_fmt(w.worker_rss_mib), _fmt(w.worker_fds, "d")]
        print("  ".join(f"{c:>11}" for c in cells))
        for kind, n in w.error_kinds.items():
            print(f"{'':15}{n} x {kind}")
    for job in run.jobs:
        took = f"{job.finished_s - job.queued_s:.0f} s" if job.finished_s is not None else "-"
        served = f", served {job.served_after_s:.1f} s after" if job.served_after_s is not None else ""
        error = f", error {job.error!r}" if job.error else ""
        print(
            f"job {job.id} at {job.queued_s:.0f} s: {job.status} in {took}, promoted {job.promoted}"
            f" {job.version or ''}{served}{error}"
        )
    print(f"steady part from {settle_s:.0f} s; slopes per hour (least squares over the samples):")
    for name, value in slopes.items():
        print(f"  {name}: {value:+.1f}")

    failed = list(run.problems)
    sent = len(run.answers)
    expected = int(args.rate * args.duration)
    errors = sum(1 for a in run.answers if a.error)
    if errors:
        failed.append(f"{errors} of {sent} predictions did not answer 200")
    if sent < expected:
        failed.append(f"{sent} predictions sent, {expected} due")
    expected_jobs = int(-(-args.duration // args.job_every))
    good = [job for job in run.jobs if job.status == "succeeded" and job.promoted]
    if len(good) != len(run.jobs) or len(run.jobs) < expected_jobs:
        failed.append(f"{len(good)} of {expected_jobs} jobs succeeded and were promoted")
    if len({s.worker_pid for s in run.samples if s.worker_pid is not None}) > 1:
        failed.append("the worker was replaced during the run")
    if any(s.worker_pid is None for s in run.samples):
        failed.append("a sample found no worker (or more than one)")
    bounds = {"rss_mib": args.max_rss_slope, "fds": args.max_fd_slope}
    for name, value in slopes.items():
        bound = bounds[name.split("_", 1)[1]]
        if not value <= bound:  # NaN (too few samples) fails too
            failed.append(f"{name} slope {value:+.1f}/h over the bound {bound:g}/h")
    print(
        f"predictions: {sent} sent, {errors} errors; jobs: {len(good)}/{len(run.jobs)} succeeded and promoted"
    )
    print(f"bounds: RSS slope <= {args.max_rss_slope:g} MiB/h, fd slope <= {args.max_fd_slope:g}/h")
    for problem in failed:
        print(f"  FAILED: {problem}")
    print("RESULT: " + ("ok" if not failed else "FAILED"))
    return failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default 3600)")
    parser.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="predictions per second, open loop (default "
        "25: about half of what the service answers at 32 clients on the 2-core machine)",
    )
    parser.add_argument("--job-every", type=float, default=600.0, help="seconds between jobs (default 600)")
    parser.add_argument(
        "--window", type=float, default=600.0, help="seconds per reported window (default 600)"
    )
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/fd samples")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="manifest of the photos and captions")
    parser.add_argument("--photos", type=int, default=450, help="use the first N samples of --data")
    parser.add_argument(
        "--per-class", type=int, default=24, help="training samples per label of the job data"
    )
    parser.add_argument("--max-in-flight", type=int, default=256, help="requests open at once, at most")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a request fails")
    parser.add_argument("--max-rss-slope", type=float, default=50.0, help="MiB per hour, each process")
    parser.add_argument("--max-fd-slope", type=float, default=3.0, help="descriptors per hour, each process")
    parser.add_argument("--json", type=Path, help="also write every window, job, sample and slope here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the report; 1 on any failure."""
    args = _parser().parse_args(argv)
    kill_all_on_exit()
    bodies = predict_bodies(args.data, args.photos)
    key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = Path(tmp)
        first = prepare_store(root / "models")
        settings = {"FUSION_API_KEY": key, "FUSION_START_WORKER": "true"}
        server = ServiceProcess(root, free_port(), settings)
        try:
            server.start(READY_TIMEOUT_S)
            upload_dataset(server, key, root, args.per_class)
            print(
                f"serving {first} (untrained head) at {server.url}; {len(bodies)} photos; "
                f"{args.rate:g} req/s for {args.duration:.0f} s, a job every {args.job_every:.0f} s",
                flush=True,
            )
            run = asyncio.run(soak(server, key, bodies, args))
        finally:
            server.stop()
    note_swaps(run)
    rows = windows(run.answers, run.samples, args.window, args.duration)
    settle_s = settle_time(run, args.window)
    slopes = steady_slopes(run.samples, settle_s)
    failed = report(run, rows, slopes, settle_s, args)
    if args.json:
        figures = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "windows": [asdict(w) for w in rows],
            "jobs": [asdict(j) for j in run.jobs],
            "samples": [asdict(s) for s in run.samples],
            "settle_s": settle_s,
            "slopes_per_hour": slopes,
            "failed": failed,
        }
        args.json.write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
