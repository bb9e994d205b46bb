"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latencies per route and status, batch sizes, queue depth, model version, jobs."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
