"""Closed-loop HTTP load generator for ``POST /predict``: N clients, real image bytes + text, loopback only.

Run as its own process (``python -m bench.loadgen``) so the client never shares a GIL with the server
under test. Prints one JSON object with throughput, latency percentiles, errors and its own CPU time.

The client shares the machine's cores with the server, so it is kept lean: every request is encoded once
up front (httpx builds the multipart body) into the exact bytes sent; each client holds one keep-alive
HTTP/1.1 connection on a uvloop event loop and parses responses with httptools (both installed with
``uvicorn[standard]``). This costs a fraction of a full client's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import mimetypes
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx
import uvloop

from fusion_testkit.stats import percentile

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class EncodedRequest:
    """One complete HTTP/1.1 request (request line, headers, multipart body) as sent on the wire."""

    wire: bytes


@dataclass
class LoadResult:
    """What one closed-loop run measured; latencies in milliseconds, throughput in requests/s."""

    concurrency: int
    window_s: float
    completed: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu_s: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)


def check_loopback(url: str) -> None:
    """Refuse any target that is not plain HTTP on this machine: the generator hammers local servers only."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"url: {url!r} is not an http:// URL (the generator speaks plain HTTP/1.1)")
    host = parts.hostname or ""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"url: {host or url!r} is not a loopback address (use 127.0.0.1)")


def encode_requests(samples: Sequence[dict[str, str]], url: str) -> list[EncodedRequest]:
    """A ``POST url`` (multipart ``image`` file + ``text``) per ``{"image": path, "text": str}``."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    encoded = []
    for sample in samples:
        path = Path(sample["image"])
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        request = httpx.Request(
            "POST", url, files={"image": (path.name, path.read_bytes(), mime)}, data={"text": sample["text"]}
        )
        body = request.read()
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        encoded.append(EncodedRequest(head.encode("latin-1") + body))
    return encoded


class _Connection:
    """One keep-alive connection; ``exchange`` sends a request and reads the whole response."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._complete = False

    def on_message_complete(self) -> None:  # httptools callback
        self._complete = True

    async def exchange(self, request: EncodedRequest) -> int:
        """The response's status code; the connection is reopened when the server closed it."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        parser = httptools.HttpResponseParser(self)
        self._complete = False
        writer.write(request.wire)
        while not self._complete:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection mid-response")
            parser.feed_data(data)
        if not parser.should_keep_alive():
            self.close()
        return int(parser.get_status_code())

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    url: str,
    requests: Sequence[EncodedRequest],
    *,
    concurrency: int,
    duration_s: float | None = None,
    warmup_s: float = 0.0,
    total_requests: int | None = None,
    timeout_s: float = 120.0,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``warmup_s + duration_s`` seconds or ``total_requests``.

    With a duration, only responses that arrive inside the measured window count (after the warm-up,
    before the end), so requests straddling the edges neither inflate nor deflate the rate.
    """
    if (duration_s is None) == (total_requests is None):
        raise ValueError("give exactly one of duration_s and total_requests")
    check_loopback(url)
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    issued = 0
    start = time.perf_counter()
    window_start = start + warmup_s if duration_s is not None else start
    window_end = window_start + duration_s if duration_s is not None else float("inf")

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def client() -> None:
        nonlocal issued
        connection = _Connection(host, port)
        try:
            while time.perf_counter() < window_end:
                if total_requests is not None and issued >= total_requests:
                    break
                request = requests[issued % len(requests)]
                issued += 1
                sent = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout_s):
                        status = await connection.exchange(request)
                    kind = "" if status == 200 else f"http_{status}"
                except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                    kind = type(exc).__name__
                    connection.close()
                done = time.perf_counter()
                if window_start <= done <= window_end:
                    if kind:
                        kinds[kind] += 1
                    else:
                        latencies.append((done - sent) * 1000.0)
        finally:
            connection.close()

    cpu_before = _cpu_seconds()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    finished = time.perf_counter()
    window = (min(window_end, finished) - window_start) if duration_s is not None else finished - start
    latencies.sort()
    errors = sum(kinds.values())
    return LoadResult(
        concurrency=concurrency,
        window_s=window,
        completed=len(latencies) + errors,
        ok=len(latencies),
        errors=errors,
        error_kinds=dict(kinds),
        throughput=len(latencies) / window if window > 0 else float("nan"),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies) if latencies else float("nan"),
        client_cpu_s=_cpu_seconds() - cpu_before,
        latencies_ms=latencies,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/predict (loopback only)")
    parser.add_argument(
        "--samples", required=True, type=Path, help='JSON list of {"image": path, "text": str}'
    )
    parser.add_argument("--concurrency", type=int, default=1, help="clients with one request in flight each")
    parser.add_argument("--duration", type=float, help="seconds measured (after --warmup)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of load before measuring")
    parser.add_argument("--requests", type=int, help="send this many requests instead of a duration")
    parser.add_argument("--latencies", action="store_true", help="include every latency in the output")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one load and write its ``LoadResult`` as JSON (stdout or ``--out``)."""
    args = _parser().parse_args(argv)
    try:
        check_loopback(args.url)
        samples = json.loads(args.samples.read_text(encoding="utf-8"))
        requests = encode_requests(samples, args.url)
        if not requests:
            raise ValueError(f"{args.samples}: no samples")
        result = uvloop.run(
            run_load(
                args.url,
                requests,
                concurrency=args.concurrency,
                duration_s=args.duration,
                warmup_s=args.warmup,
                total_requests=args.requests,
            )
        )
    except (OSError, ValueError, KeyError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out: dict[str, Any] = asdict(result)
    if not args.latencies:
        del out["latencies_ms"]
    if args.out is None:
        print(json.dumps(out))
    else:
        args.out.write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
