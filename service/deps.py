"""``Annotated`` dependency aliases: routes receive the runtime pieces the lifespan put on ``app.state``.

The getters are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
which would cost every request several thread hops for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.metrics import ServiceMetrics
from service.runtime.batcher import MicroBatcher
from service.runtime.dataset_store import DatasetStore
from service.runtime.job_store import JobStore
from service.runtime.model_holder import ModelHolder
from service.runtime.model_loader import ModelLoader
from service.runtime.model_store import ModelStore
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_model_store(request: Request) -> ModelStore:
    """The on-disk model store (versions + active pointer)."""
    store: ModelStore = request.app.state.model_store
    return store


async def get_model_holder(request: Request) -> ModelHolder:
    """The holder of the predictor currently serving."""
    holder: ModelHolder = request.app.state.model_holder
    return holder


async def get_model_loader(request: Request) -> ModelLoader:
    """The component that loads, warms up and swaps model versions."""
    loader: ModelLoader = request.app.state.model_loader
    return loader


async def get_batcher(request: Request) -> MicroBatcher:
    """The micro-batcher every prediction goes through."""
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


async def get_metrics(request: Request) -> ServiceMetrics:
    """The app's Prometheus metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_dataset_store(request: Request) -> DatasetStore:
    """The datasets under the data directory."""
    store: DatasetStore = request.app.state.dataset_store
    return store


async def get_job_store(request: Request) -> JobStore:
    """The training-job records (SQLite or PostgreSQL, per FUSION_JOB_DB_URL)."""
    store: JobStore = request.app.state.job_store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
ModelLoaderDep = Annotated[ModelLoader, Depends(get_model_loader)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
DatasetStoreDep = Annotated[DatasetStore, Depends(get_dataset_store)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
