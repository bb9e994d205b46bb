"""The fuzzed app and its checks, shared by tests/service/test_fuzz.py and the long run bench/fuzz.py.

The app runs with an API key that predict needs too, so that the bearer scheme the schema declares on
every POST/DELETE route is really enforced (schemathesis also sends requests without it, expecting 401).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi import FastAPI
from pydantic import SecretStr
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from fusion_testkit.factories import save_tiny_checkpoint
from model.demo_data import write_demo_dataset
from service.app import create_app
from service.runtime.job_store import JobStore
from service.runtime.model_store import ModelStore
from service.schemas.jobs import TrainParams
from service.settings import Settings

KEY = "fuzz-key-0123456789"
# Where a schema-valid request can still be refused for its content: random bytes are no image or zip,
# a random dataset name names no dataset, and an empty predict form holds nothing to predict.
REFUSED_BY_CONTENT = {
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
    ("POST", "/datasets"),
    ("POST", "/jobs"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def checks_for(case: Case) -> list[Any]:
    """The checks that can hold for this case.

    Positive data must be accepted wherever the schema is the whole contract. Invalid data must be
    refused, except in multipart bodies: there every value travels as text, so a "wrong type" (say
    `{}` for `texts`) arrives as a perfectly good string.
    """
    checks = list(CHECKS)
    if (case.method.upper(), case.path) not in REFUSED_BY_CONTENT:
        checks.append(positive_data_acceptance)
    if case.media_type != "multipart/form-data":
        checks.append(negative_data_rejection)
    return checks


def fuzz_settings(root: Path) -> Settings:
    """Settings of the fuzzed app: stores under `root`, the API key required everywhere, no worker."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        model_dir=root / "models",
        data_dir=root / "data",
        api_key=SecretStr(KEY),
        require_key_for_predict=True,
        start_worker=False,
        decode_threads=1,
        torch_threads=1,
        log_level="warning",
    )


def load_schema(document: dict[str, Any]) -> OpenApiSchema:
    """An OpenAPI document as a schemathesis schema that sends the API key where it is declared."""
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": KEY}}}})
    return schemathesis.openapi.from_dict(document, config=config)


def start_fuzz_app(root: Path) -> FastAPI:
    """An app serving a tiny active model, with the demo dataset and a queued job on it, so that listings
    have real entries to check against their schemas (its lifespan starts with the first request
    schemathesis sends; `shutdown_lifespans()` stops it)."""
    store = ModelStore(root / "models")
    store.activate(save_tiny_checkpoint(store.new_version_path()).name)
    write_demo_dataset(root / "data" / "datasets" / "demo", n_per_class=4)
    JobStore(root / "data" / "jobs.sqlite3").create("demo", params=TrainParams().recorded())
    return create_app(fuzz_settings(root))
