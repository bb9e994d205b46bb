"""Entry point of the training worker: `python -m service.worker` and the `fusion-worker` script."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import uuid
from types import FrameType

from model.device import configure_cpu_threads
from service.logging_setup import configure_logging
from service.runtime.job_db import JobDatabaseError
from service.settings import Settings
from service.worker.identity import make_worker_id
from service.worker.loop import Worker

log = logging.getLogger("service.worker")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fusion-worker", description="Run queued training jobs.")
    parser.add_argument("--worker-token", help="token in this worker's id (set by the API's supervisor)")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one exits"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run queued jobs until SIGTERM/SIGINT; settings come from FUSION_* variables."""
    args = _parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    token = args.worker_token or uuid.uuid4().hex[:8]
    try:
        worker = Worker(
            settings,
            worker_id=make_worker_id(os.getpid(), token),
            parent_pid=os.getppid() if args.exit_with_parent else None,
        )
    except JobDatabaseError as exc:  # e.g. a bad FUSION_JOB_DB_URL: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Training sizes nothing itself; this process may use every CPU it is allowed (its affinity).
    threads = configure_cpu_threads()
    log.info("worker %s: %d torch CPU threads", worker.worker_id, threads)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("worker %s: %s received, stopping", worker.worker_id, signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
