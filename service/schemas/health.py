"""Health probe responses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LiveStatus(BaseModel):
    """The process is up and answering."""

    status: Literal["live"] = Field(default="live", description="Always `live`")


class ReadyStatus(BaseModel):
    """A model is loaded, warmed up and serving."""

    status: Literal["ready"] = Field(default="ready", description="Always `ready`")
    model_version: str = Field(description="The version answering predictions")
    device: str = Field(description="Where the model runs, e.g. `cpu` or `cuda:0`")
