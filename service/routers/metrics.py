"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import MetricsDep
from service.schemas import examples
from service.schemas.common import example_response

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: example_response(examples.METRICS, "Prometheus text format", CONTENT_TYPE_LATEST)},
)
def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latencies per route and status, batch sizes, queue depth, model version, jobs."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
