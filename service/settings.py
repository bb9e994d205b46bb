"""Service configuration from the environment (prefix ``FUSION_``) and an optional ``.env`` file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB

ImageType = Literal["jpeg", "png", "webp", "gif", "bmp"]


class Settings(BaseSettings):
    """Every knob of the API and its worker; built once by the caller and passed to ``create_app``."""

    model_config = SettingsConfigDict(
        env_prefix="FUSION_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Network
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    # Storage
    model_dir: Path = Path("./var/models")
    data_dir: Path = Path("./var/data")
    # Empty = SQLite at data_dir/jobs.sqlite3; postgresql://user:pass@host:5432/db = shared by replicas.
    job_db_url: str | None = None

    # Inference
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # None = chosen for the device the model loads on: see `inference_plan` (and docs/PERFORMANCE.md).
    max_batch_size: int | None = Field(default=None, ge=1, le=4096, description="None = 32 on GPU, 4 on CPU")
    max_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    max_queue: int = Field(default=256, ge=1)
    decode_threads: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="None = 0 on CPU (decoded by the inference threads); on GPU the cores left, at most 8",
    )
    # Forward passes that may run at once; >1 overlaps batches, each with torch_threads intra-op threads.
    inference_threads: int | None = Field(
        default=None, ge=1, le=64, description="None = 1 on GPU; on CPU one per core, at most 4"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, le=1024, description="None = the cores shared out among the inference threads"
    )
    compile: bool = Field(default=False, description="torch.compile the model on GPU")
    # auto: ONNX Runtime on CPU (the version's graph, exported on first load if it has none); on CUDA
    # torch unless onnxruntime-gpu is installed. A version whose graph cannot load serves on torch.
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    onnx_threads: int | None = Field(
        default=None, ge=1, le=1024, description="None = every core: a lone request may use them all"
    )
    onnx_overlap_session: bool = Field(
        default=True,
        description="with several inference threads, a second ONNX session whose intra-op threads are one "
        "inference thread's share of the cores, for runs that overlap another (one more copy of the weights)",
    )
    model_poll_interval_s: float = Field(default=2.0, gt=0.0)

    # Auth
    api_key: SecretStr | None = None
    require_key_for_predict: bool = False

    # Request limits
    max_image_bytes: int = Field(default=10 * MiB, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_text_chars: int = Field(default=5000, ge=1)
    max_batch_items: int = Field(default=64, ge=1)
    # NoDecode: the environment gives "jpeg,png", split by the validator below (not JSON).
    allowed_image_types: Annotated[tuple[ImageType, ...], NoDecode] = ("jpeg", "png", "webp", "gif", "bmp")
    max_dataset_zip_bytes: int = Field(default=1 * GiB, ge=1)
    max_dataset_uncompressed_bytes: int = Field(default=4 * GiB, ge=1)
    max_zip_ratio: float = Field(default=100.0, gt=1.0)

    # Training worker
    start_worker: bool = Field(
        default=True, description="spawn the training worker as a child of the API process"
    )
    worker_poll_interval_s: float = Field(default=1.0, gt=0.0)

    # Logging
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"

    @field_validator("log_format", "log_level", "device", "runtime", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        """Accept ``INFO`` / ``JSON`` / ``CUDA`` as written in shell environments."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_image_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        """Accept ``jpeg,png`` or a JSON list (``["jpeg", "png"]``), and ``jpg`` as an alias of ``jpeg``."""
        if isinstance(value, str):
            text = value.strip()
            value = (
                json.loads(text)
                if text.startswith("[")
                else [p for p in text.replace(" ", "").split(",") if p]
            )
        if isinstance(value, (list, tuple)):
            value = tuple("jpeg" if str(v).lower() == "jpg" else str(v).lower() for v in value)
            if not value:
                raise ValueError("at least one image type must be allowed")
        return value

    @field_validator("api_key", mode="after")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """Treat ``FUSION_API_KEY=`` (empty) as "no key" instead of a key that nobody can send."""
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        """Reject combinations that cannot work, with the names of the settings involved."""
        if self.require_key_for_predict and self.api_key is None:
            raise ValueError("require_key_for_predict is true but api_key is not set (FUSION_API_KEY)")
        if self.max_dataset_uncompressed_bytes < self.max_dataset_zip_bytes:
            raise ValueError("max_dataset_uncompressed_bytes must be >= max_dataset_zip_bytes")
        return self

    def inference_plan(self, device_type: str) -> InferencePlan:
        """Batch size and threads for serving on ``device_type`` (``cpu`` or ``cuda``); set values win.

        Measured on this model (docs/PERFORMANCE.md): on CPU, per-item cost rises with the batch size and
        forwards on one core each outrun one forward on all cores, so small batches on one inference
        thread per core, each decoding its own batch (a decode pool would compete with the forwards);
        on a GPU, large batches from one thread, the other cores decoding in a pool.
        """
        from model.device import available_cpus  # imports torch: only when the plan is made

        cpus = available_cpus()
        gpu = device_type == "cuda"
        threads = self.inference_threads or (1 if gpu else min(cpus, 4))
        torch_threads = self.torch_threads or (max(1, cpus - 1) if gpu else max(1, cpus // threads))
        decode_threads = self.decode_threads
        if decode_threads is None:
            decode_threads = min(8, max(1, cpus - 1)) if gpu else 0
        batch = self.max_batch_size or (32 if gpu else 4)
        return InferencePlan(batch, threads, torch_threads, decode_threads)


@dataclass(frozen=True)
class InferencePlan:
    """How the micro-batcher serves: largest batch, concurrent forwards, torch intra-op threads, decoders."""

    max_batch_size: int
    inference_threads: int
    torch_threads: int
    decode_threads: int  # 0: each inference thread decodes its own batch
