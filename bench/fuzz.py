"""Long schemathesis run: many generated requests per operation, valid and invalid, with the same app and
checks as tests/service/test_fuzz.py (fusion_testkit.fuzz); prints the cases tried, the statuses seen
and every distinct failure.

    .venv/bin/python -m bench.fuzz --examples 300 --time-limit 900

Exits non-zero when any check failed. Requests go to the app in-process (no network).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import APIOperation

from fusion_testkit.fuzz import checks_for, load_schema, start_fuzz_app


@dataclass
class Outcome:
    """What one operation in one generation mode gave."""

    tried: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: dict[str, str] = field(default_factory=dict)  # distinct failure -> a curl reproducing it


def fuzz(
    app: FastAPI, operation: APIOperation, mode: GenerationMode, examples: int, rng_seed: int, deadline: float
) -> Outcome:
    """Send up to `examples` generated cases (no shrinking: each failure is kept as found)."""
    outcome = Outcome()

    @seed(rng_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        if time.monotonic() > deadline:
            return
        outcome.tried += 1
        try:
            response = case.call(app=app)
            outcome.statuses[response.status_code] += 1
            case.validate_response(response, checks=checks_for(case))
        except FailureGroup as group:
            for failure in group.exceptions:
                outcome.failures.setdefault(f"{type(failure).__name__}: {failure}", case.as_curl_command())
        except Exception as exc:  # the app or the transport broke: that is a failure too
            outcome.failures.setdefault(f"{type(exc).__name__}: {exc}", case.as_curl_command())

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (a route without inputs)
        run()
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Fuzz every operation of the schema; print the figures; 1 when anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for the whole run")
    args = parser.parse_args(argv)

    started = time.monotonic()
    deadline = started + args.time_limit
    failures: dict[str, str] = {}
    total = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-") as root:
        app = start_fuzz_app(Path(root))
        schema = load_schema(app.openapi())
        try:
            for result in schema.get_all_operations():
                if not isinstance(result, Ok):  # the schema itself is broken here
                    failures[f"schema: {result.err()}"] = ""
                    continue
                operation = result.ok()
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    outcome = fuzz(app, operation, mode, args.examples, args.seed, deadline)
                    total += outcome.tried
                    statuses = " ".join(f"{s}x{n}" for s, n in sorted(outcome.statuses.items()))
                    print(
                        f"{operation.label:34s} {mode.value:8s} cases {outcome.tried:5d}  "
                        f"failures {len(outcome.failures):2d}  statuses {statuses}",
                        flush=True,
                    )
                    failures.update(
                        {f"{operation.label} [{mode.value}] {k}": v for k, v in outcome.failures.items()}
                    )
        finally:
            shutdown_lifespans()
    for failure, curl in failures.items():
        print(f"\nFAILURE {failure}\n  reproduce: {curl}")
    elapsed = time.monotonic() - started
    print(f"\ncases tried: {total}  distinct failures: {len(failures)}  time: {elapsed:.0f} s")
    if time.monotonic() > deadline:
        print("stopped at the time limit")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
