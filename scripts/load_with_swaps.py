"""Predictions under load while the active model version flips back and forth.

Starts the real service (uvicorn on a free 127.0.0.1 port, temporary store with two tiny versions), sends
`--requests` predictions at `--concurrency`, and every `--swap-every` seconds activates the other version
through `POST /models/{v}/activate`. Every answer must be a 200 naming one of the two versions; readiness
must stay 200 across every swap.

    .venv/bin/python -m scripts.load_with_swaps --requests 5000 --concurrency 32

Exits non-zero on any failed request or swap, an unknown version, or fewer requests than asked.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fusion_testkit.factories import make_jpeg
from fusion_testkit.processes import free_port, rss_mib
from fusion_testkit.service_process import ServiceProcess, kill_all_on_exit, make_versions, predict_files
from fusion_testkit.stats import percentile


@dataclass
class Tally:
    """What the clients and the swapper saw."""

    sent: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    versions: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    swaps: int = 0
    swap_failures: list[str] = field(default_factory=list)
    not_ready: int = 0


async def client_loop(
    http: httpx.AsyncClient, tally: Tally, images: list[bytes], total: int, deadline: float
) -> None:
    """Send predictions until `total` were sent overall or the deadline passed."""
    while tally.sent < total and time.monotonic() < deadline:
        index = tally.sent
        tally.sent += 1
        started = time.perf_counter()
        try:
            response = await http.post("/predict", files=predict_files(index, images[index % len(images)]))
        except httpx.HTTPError as exc:
            tally.failures[type(exc).__name__] += 1
            continue
        tally.latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            tally.failures[f"HTTP {response.status_code} {response.text[:120]}"] += 1
            continue
        tally.versions[response.json()["model_version"]] += 1


async def swapper(
    http: httpx.AsyncClient, tally: Tally, versions: list[str], every_s: float, key: str, done: asyncio.Event
) -> None:
    """Activate the other version on a fixed `every_s` beat until `done` (at once when an activation ran
    over its beat); check readiness after each swap."""
    auth = {"Authorization": f"Bearer {key}"}
    current = 0
    beat = time.monotonic()
    while not done.is_set():
        beat += every_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, beat - time.monotonic()))
        if done.is_set():
            return
        current = 1 - current
        response = await http.post(f"/models/{versions[current]}/activate", headers=auth)
        tally.swaps += 1
        if response.status_code != 200:
            tally.swap_failures.append(f"{response.status_code} {response.text[:120]}")
        if (await http.get("/health/ready")).status_code != 200:
            tally.not_ready += 1


async def run(url: str, versions: list[str], key: str, args: argparse.Namespace) -> Tally:
    """The load and the swaps together; returns the tally."""
    tally = Tally()
    images = [make_jpeg((40 * i % 256, (200 + 20 * i) % 256, 90), size=(64, 48)) for i in range(16)]
    deadline = time.monotonic() + args.time_limit
    limits = httpx.Limits(
        max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        done = asyncio.Event()
        swaps = asyncio.create_task(swapper(http, tally, versions, args.swap_every, key, done))
        await asyncio.gather(
            *(client_loop(http, tally, images, args.requests, deadline) for _ in range(args.concurrency))
        )
        done.set()
        await swaps
    return tally


def main(argv: list[str] | None = None) -> int:
    """Run it; print the figures; 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--swap-every", type=float, default=1.0, help="seconds between activations")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds for the load at most")
    args = parser.parse_args(argv)
    kill_all_on_exit()

    key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="load-swaps-") as tmp:
        root = Path(tmp)
        versions = make_versions(root / "models", 2)
        server = ServiceProcess(
            root,
            free_port(),
            {"FUSION_API_KEY": key, "FUSION_START_WORKER": "false", "FUSION_MODEL_POLL_INTERVAL_S": "0.5"},
        ).start()
        rss_before = rss_mib(server.pid)
        started = time.monotonic()
        try:
            tally = asyncio.run(run(server.url, versions, key, args))
        finally:
            elapsed = time.monotonic() - started
            rss_after = rss_mib(server.pid)
            server.stop()

    unknown = set(tally.versions) - set(versions)
    failed = sum(tally.failures.values())
    rate = tally.sent / elapsed
    print(f"requests sent: {tally.sent} at concurrency {args.concurrency} in {elapsed:.1f} s ({rate:.0f}/s)")
    print(f"failures: {failed}" + "".join(f"\n  {n} x {what}" for what, n in tally.failures.items()))
    print("versions seen: " + ", ".join(f"{v} x{n}" for v, n in sorted(tally.versions.items())))
    print(f"unknown versions: {len(unknown)}")
    print(f"swaps: {tally.swaps} (failed {len(tally.swap_failures)})")
    print(f"readiness not 200 after a swap: {tally.not_ready}")
    for failure in tally.swap_failures[:5]:
        print(f"  swap failed: {failure}")
    print(
        "latency ms: p50 {:.0f}  p95 {:.0f}  p99 {:.0f}  max {:.0f}".format(
            *(1000 * percentile(sorted(tally.latencies), q) for q in (50, 95, 99, 100))
        )
    )
    print(f"server RSS MiB: before {rss_before:.0f}  after {rss_after:.0f}")
    ok = (
        failed == 0
        and not unknown
        and tally.sent >= args.requests
        and not tally.swap_failures
        and tally.not_ready == 0
        and len(tally.versions) == 2
    )
    print("RESULT: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
