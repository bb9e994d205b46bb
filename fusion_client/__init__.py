"""Python client of fusion-service: `Client` / `AsyncClient`, typed results, one `FusionAPIError`.

Depends on httpx and pydantic only (tqdm for `Job.wait(progress=True)`), never on torch or the server.
"""

from fusion_client.async_client import AsyncClient, AsyncJob
from fusion_client.client import Client, Job
from fusion_client.errors import FusionAPIError
from fusion_client.schemas import (
    ActiveModel,
    Dataset,
    DatasetSplit,
    Health,
    ItemError,
    JobEvent,
    JobInfo,
    JobProgress,
    ModalityPrediction,
    ModelList,
    ModelVersion,
    Prediction,
)

__all__ = [
    "ActiveModel",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "Dataset",
    "DatasetSplit",
    "FusionAPIError",
    "Health",
    "ItemError",
    "Job",
    "JobEvent",
    "JobInfo",
    "JobProgress",
    "ModalityPrediction",
    "ModelList",
    "ModelVersion",
    "Prediction",
]
