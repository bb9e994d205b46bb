"""Several API replicas on one model store: how soon each serves a version promoted through another.

Starts `--replicas` real `python -m service` processes (uvicorn, separate ports on 127.0.0.1) over one
shared temporary model store and data directory holding two untrained versions: `--model tiny` (default)
is the cnn + bow checkpoint the tests use (under 1 MB), `--model production` the demo model's shape
(EfficientNet-Lite0 + MiniLM with their packaged weights, a fresh head; about 107 MB, as heavy to load as a
trained one). After a random pause of up to one poll interval (so that promotions land anywhere in the
replicas' polling cycle), each round promotes the other version through replica 1's
`POST /models/{v}/activate` and polls every replica's `/health/ready` until it names the new version.
Printed: the seconds from sending the activate request to each replica serving the version (replica 1's
figure is its own load + warm-up; the others' add the pointer polling and their own load). A prediction
from every replica must then name the new version too.

    .venv/bin/python -m scripts.replicas_check --rounds 5 [--model production]

With `--url` (repeated) nothing is started: the replicas of a running deployment are checked by swapping
its active version with the newest other one (the active one is restored at the end).

Exits non-zero when any replica takes longer than `--limit` seconds, or on any failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from fusion_testkit.processes import free_port
from fusion_testkit.service_process import ServiceProcess, kill_all_on_exit, make_versions, predict_files
from service.settings import Settings

# The bootstrap-demo model's architecture (ModelConfig defaults but the concat head) at its full size.
PRODUCTION_SHAPE: dict[str, Any] = {
    "image_encoder": "efficientnet_lite0",
    "text_encoder": "minilm",
    "fusion": "concat",
    "pretrained": True,
    "image_size": 224,
    "max_text_tokens": 128,
    "hidden_dim": 256,
}


async def seconds_until_serving(http: httpx.AsyncClient, url: str, version: str, started: float) -> float:
    """Poll `url`'s readiness until it serves `version`; seconds since `started` (perf_counter)."""
    while True:
        response = await http.get(f"{url}/health/ready")
        if response.status_code == 200 and response.json()["model_version"] == version:
            return time.perf_counter() - started
        await asyncio.sleep(0.02)


async def promote(
    http: httpx.AsyncClient, urls: list[str], version: str, key: str, timeout_s: float
) -> list[float]:
    """Activate `version` through the first replica; seconds until each replica serves it (in order).

    Raises RuntimeError when the activation fails, a replica is not serving it after `timeout_s`, or a
    prediction afterwards names another version.
    """
    auth = {"Authorization": f"Bearer {key}"} if key else {}  # a deployment without a key
    started = time.perf_counter()
    activate = asyncio.create_task(http.post(f"{urls[0]}/models/{version}/activate", headers=auth))
    seconds: list[float] | None = None
    with contextlib.suppress(TimeoutError):
        seconds = await asyncio.wait_for(
            asyncio.gather(*(seconds_until_serving(http, url, version, started) for url in urls)), timeout_s
        )
    response = await activate
    if response.status_code != 200:  # reported first: a refused activation is why nobody swapped
        raise RuntimeError(f"activate {version}: HTTP {response.status_code} {response.text[:200]}")
    if seconds is None:
        raise RuntimeError(f"not every replica served {version} within {timeout_s:.0f} s")
    for index, url in enumerate(urls):
        prediction = await http.post(f"{url}/predict", files=predict_files(index))
        served = prediction.json().get("model_version") if prediction.status_code == 200 else None
        if served != version:
            raise RuntimeError(
                f"replica {index + 1} answered with {served!r} (HTTP {prediction.status_code}), not {version}"
            )
    return seconds


async def run_rounds(
    urls: list[str],
    versions: list[str],
    key: str,
    rounds: int,
    poll_interval_s: float,
    timeout_s: float,
    *,
    restore: bool = False,
) -> list[list[float]]:
    """`rounds` promotions, alternating between the two versions (the first is active at the start);
    with `restore`, the first is promoted once more (untimed) if it is not the active one at the end."""
    results: list[list[float]] = []
    async with httpx.AsyncClient(timeout=30.0) as http:
        for number in range(1, rounds + 1):
            # Without it every promotion would come just after the replicas' last poll: always the worst case.
            await asyncio.sleep(random.uniform(0.0, poll_interval_s))
            version = versions[number % 2]
            seconds = await promote(http, urls, version, key, timeout_s)
            results.append(seconds)
            figures = ", ".join(f"replica {i + 1} {s:.2f} s" for i, s in enumerate(seconds))
            print(
                f"round {number}: promoted {version} through replica 1; serving after: {figures}", flush=True
            )
        if restore and rounds % 2:
            await promote(http, urls, versions[0], key, timeout_s)
            print(f"restored {versions[0]} as the active version")
    return results


def versions_to_swap(url: str) -> list[str]:
    """The active version of a running deployment and the newest other loadable one."""
    listing = httpx.get(f"{url}/models", timeout=30.0).raise_for_status().json()
    others = [
        v["version"] for v in listing["versions"] if v["version"] != listing["active"] and not v["error"]
    ]
    if listing["active"] is None or not others:
        raise RuntimeError(f"{url}/models: need an active version and another one to promote")
    return [listing["active"], others[-1]]


def report(results: list[list[float]], limit_s: float) -> bool:
    """Print each replica's median and max; whether every swap was within `limit_s`."""
    for index in range(len(results[0])):
        column = [seconds[index] for seconds in results]
        print(f"replica {index + 1}: median {statistics.median(column):.2f} s, max {max(column):.2f} s")
    others = [s for seconds in results for s in seconds[1:]]
    print(
        f"replicas that polled the pointer: median {statistics.median(others):.2f} s, max {max(others):.2f} s"
    )
    worst = max(max(seconds) for seconds in results)
    ok = worst <= limit_s
    print(f"RESULT: {'ok' if ok else 'FAILED'} (slowest {worst:.2f} s, limit {limit_s:g} s)")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Start the replicas (or use `--url`s), run the rounds, print the figures; 1 when any swap was late."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "production"), default="tiny", help="versions to swap")
    parser.add_argument("--replicas", type=int, default=2, help="API processes to start (at least 2)")
    parser.add_argument("--rounds", type=int, default=5, help="promotions to time")
    parser.add_argument("--limit", type=float, default=5.0, help="seconds allowed from promotion to serving")
    parser.add_argument(
        "--poll-interval",
        type=float,
        help="FUSION_MODEL_POLL_INTERVAL_S for the replicas (default: the service's own default)",
    )
    parser.add_argument(
        "--job-db-url", help="FUSION_JOB_DB_URL for the replicas (default: SQLite in the data dir)"
    )
    parser.add_argument(
        "--url",
        action="append",
        help="a replica of a running deployment (repeat it; the first gets the activations): nothing is"
        " started, the active version and the newest other one are swapped, the active one is restored",
    )
    parser.add_argument("--api-key", default=os.environ.get("FUSION_API_KEY"), help="for --url deployments")
    args = parser.parse_args(argv)
    kill_all_on_exit()
    if args.rounds < 1 or (len(args.url) < 2 if args.url else args.replicas < 2):
        parser.error("--rounds must be at least 1, and --replicas (or --url given) at least 2")
    poll_interval = (
        Settings.model_fields["model_poll_interval_s"].default
        if args.poll_interval is None
        else args.poll_interval
    )

    def rounds(urls: list[str], versions: list[str], key: str) -> bool:
        timeout_s = max(30.0, 3 * args.limit)
        try:
            results = asyncio.run(
                run_rounds(urls, versions, key, args.rounds, poll_interval, timeout_s, restore=bool(args.url))
            )
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"error: {exc}")
            print("RESULT: FAILED")
            return False
        return report(results, args.limit)

    if args.url:
        versions = versions_to_swap(args.url[0])
        return 0 if rounds(args.url, versions, args.api_key or "") else 1

    key = secrets.token_urlsafe(16)
    settings = {
        "FUSION_API_KEY": key,
        "FUSION_START_WORKER": "false",
        "FUSION_MODEL_POLL_INTERVAL_S": str(poll_interval),
    }
    if args.job_db_url:
        settings["FUSION_JOB_DB_URL"] = args.job_db_url
    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        root = Path(tmp)
        model_dir = root / "models"
        versions = make_versions(model_dir, 2, **(PRODUCTION_SHAPE if args.model == "production" else {}))
        started = time.perf_counter()
        servers = [ServiceProcess(root, free_port(), settings).start() for _ in range(args.replicas)]
        startup_s = time.perf_counter() - started
        print(
            f"{args.replicas} replicas of the {args.model} model ready in {startup_s:.1f} s on one store,"
            f" pointer polled every {poll_interval} s: " + ", ".join(s.url for s in servers),
            flush=True,
        )
        try:
            ok = rounds([s.url for s in servers], versions, key)
        finally:
            for server in servers:
                server.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
