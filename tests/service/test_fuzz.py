"""Schemathesis against the app's own /openapi.json: no 5xx, and every answer matches its declared schema.

The app and the checks are fusion_testkit.fuzz's; bench/fuzz.py runs the same with many more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.python.asgi import shutdown_lifespans

from fusion_testkit.fuzz import checks_for, fuzz_settings, load_schema, start_fuzz_app
from tests.service.route_table import openapi_document

EXAMPLES_PER_OPERATION = 20

schema = load_schema(openapi_document(fuzz_settings(Path("unused"))))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app every fuzz case is sent to, shared by the module's operations."""
    yield start_fuzz_app(tmp_path_factory.mktemp("fuzz"))
    shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_response_matches_the_schema(case: Case, fuzz_app: FastAPI) -> None:
    case.call_and_validate(app=fuzz_app, checks=checks_for(case))
