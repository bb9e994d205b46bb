"""Request and response models of the /datasets routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.runtime.dataset_store import DatasetInfo


class DatasetSplit(BaseModel):
    """One manifest of a dataset (name null for the image-folder layout)."""

    name: str | None = Field(description="manifest stem, usable as `dataset:split`; null for image folders")
    samples: int = Field(description="number of valid samples")
    label_counts: dict[str, int] = Field(description="samples per label")
    skipped: int = Field(
        description="invalid rows, left out of `samples`; a job uses the split only with"
        " `skip_invalid` when this is not 0"
    )
    problem_counts: dict[str, int] = Field(description="invalid rows per problem kind (e.g. duplicate)")
    fingerprint: str = Field(description="content hash of the valid rows and their image bytes")


class DatasetPublic(BaseModel):
    """A dataset in the data directory: what it holds and how big it is."""

    name: str = Field(description="The dataset name (its folder under the data directory)")
    format: str = Field(description="jsonl, csv, image_folder or mixed")
    default_split: str | None = Field(description="the split a bare `name` refers to")
    samples: int = Field(description="samples of the default split")
    label_counts: dict[str, int] = Field(description="label distribution of the default split")
    splits: list[DatasetSplit] = Field(description="Every manifest of the dataset")
    size_bytes: int = Field(description="bytes on disk")
    created_at: datetime = Field(description="When the dataset was uploaded or placed (UTC)")
    error: str | None = Field(None, description="why some split (or a bare reference) does not load")

    @classmethod
    def from_info(cls, info: DatasetInfo) -> DatasetPublic:
        """Build from the store's summary."""
        return cls(
            name=info.name,
            format=info.format,
            default_split=info.default_split,
            samples=info.samples,
            label_counts=info.label_counts,
            splits=[
                DatasetSplit(
                    name=s.name,
                    samples=s.samples,
                    label_counts=s.label_counts,
                    skipped=s.skipped,
                    problem_counts=s.problem_counts,
                    fingerprint=s.fingerprint,
                )
                for s in info.splits
            ],
            size_bytes=info.size_bytes,
            created_at=info.created_at,
            error=info.error,
        )


class DatasetList(BaseModel):
    """Every dataset in the data directory, by name."""

    datasets: list[DatasetPublic] = Field(description="Every dataset, by name")
