"""Application factory: ``create_app(settings)`` wires routers, middleware and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from model.device import configure_cpu_threads, resolve_device
from service import __version__
from service.docs_pages import DocsPolicyMiddleware
from service.errors import install_error_handlers
from service.logging_setup import configure_logging
from service.metrics import ServiceMetrics
from service.middleware import RequestContextMiddleware
from service.routers import datasets, health, jobs, metrics, models, predict
from service.routers.console import mount_console
from service.runtime.batcher import MicroBatcher
from service.runtime.dataset_store import DatasetStore
from service.runtime.decoding import ImagePolicy
from service.runtime.job_store import JobStore
from service.runtime.model_holder import ModelHolder
from service.runtime.model_loader import ModelLoader
from service.runtime.model_store import ModelStore
from service.runtime.worker_supervisor import WorkerSupervisor
from service.runtime.zip_extract import ZipLimits
from service.settings import Settings

log = logging.getLogger(__name__)

ROUTERS = [predict.router, models.router, datasets.router, jobs.router, health.router, metrics.router]

TAGS = [
    {"name": "predict", "description": "Classify an image + text pair (or a batch of them)."},
    {"name": "models", "description": "Model versions in the store; activate one (also the rollback)."},
    {"name": "datasets", "description": "Upload (zip), list, inspect and delete training datasets."},
    {"name": "jobs", "description": "Training jobs: queue, follow (JSON, SSE, PNG report), cancel."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "metrics", "description": "Prometheus metrics."},
]

DESCRIPTION = """
Train and serve image + text fusion classifiers.

* **Predict** with `POST /predict` (multipart: `image` file + `text` field) or `POST /predict/batch`.
* **Model versions** live in a store on disk; `POST /models/{version}/activate` switches (or rolls back)
  without a restart and without failing requests in flight.
* **Train**: upload a dataset zip to `POST /datasets`, queue `POST /jobs`, follow `GET /jobs/{id}/events`;
  a separate worker process trains and promotes the result per the job's `promote`.
* Errors always have the shape `{"error": {"code": ..., "message": ..., "field": ...}}`.
* When an API key is configured, send it as `Authorization: Bearer <key>` (button *Authorize*).
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI app; nothing is loaded until the lifespan starts."""
    configure_logging(settings)
    app = FastAPIOffline(
        title="Fusion classifier API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan,
        static_url="/static/docs",
    )
    app.state.settings = settings
    app.state.metrics = ServiceMetrics(app.state)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    app.add_middleware(DocsPolicyMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    mount_console(app)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start every runtime piece in order and stop them in reverse order."""
    settings: Settings = app.state.settings
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(_serving(app, settings))
        await stack.enter_async_context(_training(app, settings))
        yield


@contextlib.asynccontextmanager
async def _serving(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Model store, holder, micro-batcher, initial model load and the active-pointer watcher."""
    # Resolved as the model loader resolves it: the plan is made for the device the model runs on.
    plan = settings.inference_plan(resolve_device(settings.device).type)
    log.info(
        "inference: %d thread(s) x %d torch thread(s), batches of up to %d, %s",
        plan.inference_threads,
        plan.torch_threads,
        plan.max_batch_size,
        f"{plan.decode_threads} decode thread(s)" if plan.decode_threads else "decoded on those threads",
    )
    configure_cpu_threads(plan.torch_threads)
    store = ModelStore(settings.model_dir)
    holder = ModelHolder()
    loader = ModelLoader(
        store,
        holder,
        device=settings.device,
        max_pixels=settings.max_image_pixels,
        compile=settings.compile,
        runtime=settings.runtime,
        onnx_threads=settings.onnx_threads,
        overlap_threads=plan.torch_threads
        if settings.onnx_overlap_session and plan.inference_threads > 1
        else None,
    )
    batcher = MicroBatcher(
        holder,
        decode=ImagePolicy(settings.allowed_image_types),
        max_batch_size=plan.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        decode_threads=plan.decode_threads,
        inference_threads=plan.inference_threads,
        on_batch=app.state.metrics.observe_batch,
    )
    app.state.model_store = store
    app.state.model_holder = holder
    app.state.model_loader = loader
    app.state.batcher = batcher
    batcher.start()
    try:
        await loader.sync()
        watcher = asyncio.create_task(loader.watch(settings.model_poll_interval_s), name="model-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await loader.aclose()
    finally:
        await asyncio.to_thread(batcher.stop)
        holder.clear()


@contextlib.asynccontextmanager
async def _training(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Dataset and job stores, and (when ``start_worker``) the training worker as a child process."""
    app.state.dataset_store = DatasetStore(settings.data_dir, ZipLimits.from_settings(settings))
    app.state.job_store = job_store = JobStore.from_settings(settings)
    # Closed even when the worker cannot be started.
    with contextlib.closing(job_store):
        supervisor = WorkerSupervisor(settings, job_store) if settings.start_worker else None
        app.state.worker_supervisor = supervisor
        if supervisor is not None:
            supervisor.start()
        try:
            yield
        finally:
            if supervisor is not None:
                await asyncio.to_thread(supervisor.stop)
