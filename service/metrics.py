"""Prometheus metrics with a registry per app: requests, latency, batches, queue depth, model, jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _StateCollector(Collector):
    """Values read from the app's runtime objects at scrape time, so they are never stale."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        batcher = getattr(self.state, "batcher", None)
        depth = GaugeMetricFamily(
            "inference_queue_depth", "Prediction requests admitted and not yet answered"
        )
        depth.add_metric([], batcher.depth if batcher is not None else 0)
        yield depth

        holder = getattr(self.state, "model_holder", None)
        predictor = holder.predictor if holder is not None else None
        ready = GaugeMetricFamily("model_ready", "1 when a model is loaded and serving")
        ready.add_metric([], 1 if predictor is not None else 0)
        yield ready
        info = GaugeMetricFamily(
            "model_info",
            "The model version serving, where and on which runtime (value is always 1)",
            labels=["version", "device", "runtime"],
        )
        if predictor is not None:
            info.add_metric([predictor.version, str(predictor.device), predictor.runtime], 1)
        yield info

        job_store = getattr(self.state, "job_store", None)
        if job_store is not None:
            jobs = GaugeMetricFamily("training_jobs", "Training jobs by status", labels=["status"])
            for status, count in sorted(job_store.count_by_status().items()):
                jobs.add_metric([status], count)
            yield jobs


class ServiceMetrics:
    """The app's metrics; ``state`` is ``app.state``, read at scrape time for the gauges."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_batch_size", "Items per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.registry.register(_StateCollector(state))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_batch(self, size: int) -> None:
        """Record the size of one forward pass (called from the inference thread)."""
        self.batch_size.observe(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
