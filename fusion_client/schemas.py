"""Typed results of the fusion-service API, as the client sees them (unknown fields are ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class ModalityPrediction(BaseModel):
    """The prediction from one modality alone (with `explain=True`)."""

    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """One prediction: the label, every label's probability and the version that answered."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    modalities_used: list[str]
    image_only: ModalityPrediction | None = None
    text_only: ModalityPrediction | None = None
    gate: dict[str, float] | None = None


class ItemError(BaseModel):
    """A batch item the service could not predict (the other items are unaffected)."""

    code: str
    message: str
    field: str | None = None


class DatasetSplit(BaseModel):
    """One manifest of a dataset (name None for the image-folder layout)."""

    name: str | None
    samples: int
    label_counts: dict[str, int]
    skipped: int = 0
    problem_counts: dict[str, int] = Field(default_factory=dict)
    fingerprint: str


class Dataset(BaseModel):
    """A dataset on the service: its splits, label distribution and size."""

    name: str
    format: str
    default_split: str | None
    samples: int
    label_counts: dict[str, int]
    splits: list[DatasetSplit]
    size_bytes: int
    created_at: datetime
    error: str | None = None


class JobProgress(BaseModel):
    """Where a running job is: stage, epoch and step, latest loss, estimated seconds left."""

    stage: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    eta_s: float | None = None
    fraction: float


class JobInfo(BaseModel):
    """A snapshot of a training job."""

    id: str
    status: JobStatus
    dataset: str
    validation: str | float | None = None
    test: str | None = None
    cv: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    promote: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = None
    cancel_requested: bool = False
    progress: JobProgress | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] | None = None
    model_version: str | None = None
    promoted: bool = False
    error: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job succeeded, failed or was cancelled."""
        return self.status in FINISHED


class JobEvent(BaseModel):
    """One Server-Sent Event of `GET /jobs/{id}/events`: `progress` while running, `end` once finished."""

    event: str
    job: JobInfo


class ModelVersion(BaseModel):
    """One version in the model store."""

    version: str
    active: bool
    created_at: datetime
    labels: list[str] = Field(default_factory=list)
    image_encoder: str | None = None
    text_encoder: str | None = None
    fusion: str | None = None
    modalities: list[str] = Field(default_factory=list)
    supports_missing_modality: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    dataset_fingerprint: str | None = None
    train_config: dict[str, Any] | None = None
    error: str | None = None


class ActiveModel(ModelVersion):
    """The active version, and what the replica that answered is serving."""

    serving: str | None = None
    device: str | None = None


class ModelList(BaseModel):
    """Every version in the store, oldest first, and which one is active."""

    active: str | None
    serving: str | None
    versions: list[ModelVersion]


class Health(BaseModel):
    """Liveness and readiness of the service (`ready` False with the reason while no model serves)."""

    live: bool
    ready: bool
    model_version: str | None = None
    device: str | None = None
    reason: str | None = None
