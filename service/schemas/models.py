"""Model version listings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from model.config import ModelConfig
from service.runtime.model_store import ModelVersion


def _model_config(config: dict[str, Any]) -> ModelConfig | None:
    """The checkpoint's model config, or None when it does not parse (the version's `error` says why)."""
    try:
        return ModelConfig.from_stored(config)
    except (TypeError, ValueError):
        return None


class ModelVersionPublic(BaseModel):
    """One version in the model store."""

    version: str = Field(description="Version name (sorts by creation time)")
    active: bool = Field(description="Whether the store's active pointer names this version")
    created_at: datetime = Field(description="When the version was saved (UTC)")
    labels: list[str] = Field(default_factory=list, description="The labels it predicts, in output order")
    image_encoder: str | None = Field(None, description="Image encoder, e.g. `efficientnet_lite0`")
    text_encoder: str | None = Field(None, description="Text encoder, e.g. `minilm`")
    fusion: str | None = Field(None, description="Fusion head: `concat`, `sum` or `gated`")
    modalities: list[str] = Field(default_factory=list, description="Inputs the model has an encoder for")
    supports_missing_modality: bool = Field(
        False, description="Whether either input may be left out of a prediction"
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Validation metrics saved with the checkpoint"
    )
    dataset_fingerprint: str | None = Field(None, description="Content hash of the training data")
    train_config: dict[str, Any] | None = Field(None, description="The training hyper-parameters used")
    error: str | None = Field(
        None, description="Why the checkpoint's metadata could not be read, if it cannot"
    )

    @classmethod
    def from_version(cls, entry: ModelVersion, active: str | None) -> ModelVersionPublic:
        """Build from the store's entry; ``active`` is the version the active pointer names."""
        meta = entry.meta or {}
        config = meta.get("model_config") or {}
        parsed = _model_config(config)
        return cls(
            version=entry.version,
            active=entry.version == active,
            created_at=entry.created_at,
            labels=list(meta.get("labels") or []),
            image_encoder=config.get("image_encoder"),
            text_encoder=config.get("text_encoder"),
            fusion=config.get("fusion"),
            modalities=list(parsed.modalities) if parsed else [],
            supports_missing_modality=parsed.supports_missing_modality if parsed else False,
            metrics=entry.metrics,
            dataset_fingerprint=meta.get("dataset_fingerprint"),
            train_config=meta.get("train_config"),
            error=entry.error,
        )


class ModelListPublic(BaseModel):
    """Every version in the store, oldest first, and which one is active."""

    active: str | None = Field(description="The active version, or null when none is")
    serving: str | None = Field(description="The version this replica is serving right now")
    versions: list[ModelVersionPublic] = Field(description="Every version, oldest first")


class ActiveModelPublic(ModelVersionPublic):
    """The active version and what this replica is serving."""

    serving: str | None = Field(
        description="The version this replica is serving (may lag the pointer briefly)"
    )
    device: str | None = Field(description="Where this replica runs the model")
    runtime: str | None = Field(
        None, description="What runs it: `torch`, `onnx` or `onnx-int8` (ONNX Runtime, fp32 or int8)"
    )
