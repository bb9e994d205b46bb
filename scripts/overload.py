"""Drive the service past its queue bound and back: 503 with Retry-After, bounded memory, recovery.

Starts the real service with a small prediction queue (`--max-queue`) and one decode thread, then runs
three phases against it: a calm one (`--calm-concurrency`), a flood (`--flood-concurrency` for
`--flood-seconds`) and a calm one again. Prints the statuses per phase, the Retry-After values, and the
server's resident memory before, at its peak during the flood, and after.

    .venv/bin/python -m scripts.overload --max-queue 8 --flood-concurrency 128 --flood-seconds 20

Exits non-zero unless: the flood got 503s, every 503 had a Retry-After and the `overloaded` code, nothing
else but 200 and 503 came back, both calm phases were all 200, and the RSS peak stayed within
`--max-rss-growth-mib` of the start.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from fusion_testkit.processes import free_port, rss_mib
from fusion_testkit.service_process import ServiceProcess, kill_all_on_exit, make_versions, predict_files
from fusion_testkit.stats import percentile


@dataclass
class Phase:
    """What one phase of the run got back."""

    name: str
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    retry_after: collections.Counter[str] = field(default_factory=collections.Counter)
    bad_503: int = 0  # a 503 without Retry-After or without the `overloaded` code
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        """Requests that got an answer or an error."""
        return sum(self.statuses.values())


def heavy_png(seed: int, side: int) -> bytes:
    """A noisy `side` x `side` PNG: no JPEG draft shortcut, so decoding it takes real work."""
    pixels = np.random.default_rng(seed).integers(0, 64, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


async def drive(
    url: str, phase: Phase, images: list[bytes], concurrency: int, count: int, seconds: float
) -> None:
    """Send predictions from `concurrency` clients until `count` were sent or `seconds` passed."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def client() -> None:
            while phase.sent < count and time.monotonic() < deadline:
                index = phase.sent
                begun = time.perf_counter()
                try:
                    response = await http.post(
                        "/predict", files=predict_files(index, images[index % len(images)])
                    )
                except httpx.HTTPError as exc:
                    phase.statuses[type(exc).__name__] += 1
                    continue
                phase.latencies[str(response.status_code)].append(time.perf_counter() - begun)
                phase.statuses[str(response.status_code)] += 1
                if response.status_code == 503:
                    retry = response.headers.get("retry-after")
                    code = response.json().get("error", {}).get("code")
                    phase.retry_after[str(retry)] += 1
                    if retry is None or not retry.isdigit() or int(retry) < 1 or code != "overloaded":
                        phase.bad_503 += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    phase.seconds = time.monotonic() - started


class RssSampler:
    """Samples a process's RSS every `interval_s` in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_mib = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mib = max(self.peak_mib, rss_mib(self.pid))


def report(phase: Phase) -> None:
    """Print one phase's figures."""
    statuses = ", ".join(f"{s} x{n}" for s, n in sorted(phase.statuses.items()))
    print(f"{phase.name}: {phase.sent} requests in {phase.seconds:.1f} s -> {statuses}")
    for status, latencies in sorted(phase.latencies.items()):
        p50, p99 = (1000 * percentile(sorted(latencies), q) for q in (50, 99))
        print(f"  latency of the {status}s: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    if phase.retry_after:
        values = ", ".join(f"{v} s x{n}" for v, n in sorted(phase.retry_after.items()))
        print(
            f"  Retry-After on 503: {values}; 503 without Retry-After or code 'overloaded': {phase.bad_503}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the three phases; print the figures; 1 when a promise was broken."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-queue", type=int, default=8, help="FUSION_MAX_QUEUE of the server")
    parser.add_argument("--calm-concurrency", type=int, default=2)
    parser.add_argument("--calm-requests", type=int, default=200)
    parser.add_argument("--flood-concurrency", type=int, default=128)
    parser.add_argument("--flood-seconds", type=float, default=20.0)
    parser.add_argument("--flood-requests", type=int, default=50_000, help="upper bound on the flood")
    parser.add_argument("--image-side", type=int, default=384)
    parser.add_argument("--max-rss-growth-mib", type=float, default=256.0)
    args = parser.parse_args(argv)
    kill_all_on_exit()

    images = [heavy_png(i, args.image_side) for i in range(8)]
    settings = {
        "FUSION_START_WORKER": "false",
        "FUSION_MAX_QUEUE": str(args.max_queue),
        "FUSION_MAX_BATCH_SIZE": "4",
        "FUSION_DECODE_THREADS": "1",
        "FUSION_TORCH_THREADS": "1",
    }
    calm = Phase("calm before")
    flood = Phase("flood")
    after = Phase("calm after")
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        root = Path(tmp)
        make_versions(root / "models", 1)
        server = ServiceProcess(root, free_port(), settings).start()
        try:
            asyncio.run(drive(server.url, calm, images, args.calm_concurrency, args.calm_requests, 120))
            rss_before = rss_mib(server.pid)
            with RssSampler(server.pid) as sampler:
                asyncio.run(
                    drive(
                        server.url,
                        flood,
                        images,
                        args.flood_concurrency,
                        args.flood_requests,
                        args.flood_seconds,
                    )
                )
            time.sleep(2.0)  # load drops
            asyncio.run(drive(server.url, after, images, args.calm_concurrency, args.calm_requests, 120))
            rss_after = rss_mib(server.pid)
        finally:
            server.stop()

    print(f"server: max_queue {args.max_queue}, 1 decode thread, {len(images[0]) // 1024} KiB PNG images")
    for phase in (calm, flood, after):
        report(phase)
    growth = sampler.peak_mib - rss_before
    print(
        f"server RSS MiB: before {rss_before:.0f}  peak {sampler.peak_mib:.0f}  after {rss_after:.0f}"
        f"  (growth to peak {growth:.0f}, bound {args.max_rss_growth_mib:.0f})"
    )
    only_200 = {"200"}
    checks = {
        "calm phase before the flood all 200": set(calm.statuses) == only_200,
        "the flood got 503s": flood.statuses["503"] > 0,
        "the flood got only 200 and 503": set(flood.statuses) <= {"200", "503"},
        "every 503 had Retry-After and code overloaded": flood.bad_503 == 0,
        "calm phase after the flood all 200 (recovered)": set(after.statuses) == only_200,
        "RSS growth within the bound": growth <= args.max_rss_growth_mib,
    }
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    ok = all(checks.values())
    print("RESULT: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
