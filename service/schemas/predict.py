"""Prediction requests and responses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.runtime.batcher import ServedPrediction
from service.schemas.common import ErrorDetail

Modality = Literal["image", "text"]


class ModalityPrediction(BaseModel):
    """What the model predicts from one modality alone (the other marked missing as in training)."""

    label: str = Field(description="The most probable label from this modality alone")
    probabilities: dict[str, float] = Field(description="Probability of every label from this modality alone")


class PredictionPublic(BaseModel):
    """One prediction; ``image_only``, ``text_only`` and ``gate`` are filled with ``?explain=true``."""

    label: str = Field(description="The most probable label", examples=["positive"])
    probabilities: dict[str, float] = Field(
        description="Probability of every label; they sum to 1",
        examples=[{"negative": 0.12, "positive": 0.88}],
    )
    model_version: str = Field(description="The model version that answered")
    modalities_used: list[Modality] = Field(description="Which inputs the model actually used")
    image_only: ModalityPrediction | None = Field(
        None, description="Prediction from the image alone (explain)"
    )
    text_only: ModalityPrediction | None = Field(None, description="Prediction from the text alone (explain)")
    gate: dict[str, float] | None = Field(
        None, description="Fusion gate weights per modality, when the head has a gate (explain)"
    )

    @classmethod
    def from_served(cls, served: ServedPrediction, explain: bool) -> PredictionPublic:
        """Build from the batcher's answer; the single-modality parts and the gate only with ``explain``."""
        p = served.prediction

        def single(probabilities: dict[str, float] | None) -> ModalityPrediction | None:
            if not explain or probabilities is None:
                return None
            return ModalityPrediction(
                label=max(probabilities, key=probabilities.__getitem__), probabilities=probabilities
            )

        return cls(
            label=p.label,
            probabilities=p.probabilities,
            model_version=served.version,
            modalities_used=list(p.modalities_used),  # type: ignore[arg-type]
            image_only=single(p.image_only),
            text_only=single(p.text_only),
            gate=p.gate if explain else None,
        )


class BatchItemError(BaseModel):
    """A batch item that could not be predicted; the other items are unaffected."""

    error: ErrorDetail = Field(description="Why this item could not be predicted")


class BatchPredictionPublic(BaseModel):
    """Predictions in the order of the request's items."""

    predictions: list[PredictionPublic | BatchItemError] = Field(
        description="A prediction or an error for each item, in request order"
    )


class BatchItemCreate(BaseModel):
    """One item of a JSON batch: a base64-encoded image and/or a text."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(None, description="Image file bytes (JPEG, PNG, ...) in standard base64")
    text: str | None = Field(None, description="The text paired with the image")


class BatchPredictCreate(BaseModel):
    """A JSON batch of items (the alternative to the multipart form)."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchItemCreate] = Field(min_length=1, description="Up to `max_batch_items` items")
