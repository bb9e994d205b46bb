"""Request and response models of the /jobs routes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from model.config import (
    FINETUNE_MODES,
    FUSIONS,
    IMAGE_ENCODERS,
    KEPT_EPOCHS,
    METRICS,
    SCHEDULES,
    TEXT_ENCODER_LAYERS,
    TEXT_ENCODERS,
    ModelConfig,
    TrainConfig,
    image_tags_problem,
    resolve_image_tags,
)
from service.runtime.dataset_store import NAME_PATTERN
from service.runtime.job_record import Job, JobStatus

_NAME = NAME_PATTERN.strip("^$")
_REF = re.compile(rf"^{_NAME}(:{_NAME})?$")
DatasetRef = Annotated[
    str,
    StringConstraints(pattern=_REF.pattern),
    Field(description="a dataset name, or `name:split` for one manifest of it (e.g. `mvsa:dev`)"),
]
_M = ModelConfig()
_T = TrainConfig()

# The choices are the model package's own tuples: pydantic checks them and lists them in the OpenAPI
# schema. mypy cannot read a Literal built from a tuple, so it sees plain strings.
if TYPE_CHECKING:
    ImageEncoderName: TypeAlias = str
    TextEncoderName: TypeAlias = str
    FusionName: TypeAlias = str
    ScheduleName: TypeAlias = str
    FinetuneMode: TypeAlias = str
    MetricName: TypeAlias = str
    KeptEpoch: TypeAlias = str
else:
    ImageEncoderName = Literal[IMAGE_ENCODERS]
    TextEncoderName = Literal[TEXT_ENCODERS]
    FusionName = Literal[FUSIONS]
    ScheduleName = Literal[SCHEDULES]
    FinetuneMode = Literal[FINETUNE_MODES]
    MetricName = Literal[METRICS]
    KeptEpoch = Literal[KEPT_EPOCHS]


class TrainParams(BaseModel):
    """Model architecture and training hyper-parameters; every default is the production recipe."""

    # Strict: a value of the wrong JSON type (0 for a boolean, "10" for an integer) is a 422, as the
    # OpenAPI schema promises, rather than silently coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    image_encoder: ImageEncoderName = Field(
        default=_M.image_encoder, description="image encoder; none trains a text-only model"
    )
    text_encoder: TextEncoderName = Field(
        default=_M.text_encoder, description="text encoder; none trains an image-only model"
    )
    fusion: FusionName = Field(
        default=_M.fusion,
        description=(
            "how the two embeddings are combined; sum is the default (docs/QUALITY.md), gated learns a"
            " weight per modality and shows it in explain"
        ),
    )
    pretrained: bool = Field(default=_M.pretrained, description="start from the packaged pretrained weights")
    hidden_dim: int = Field(default=_M.hidden_dim, ge=1, le=4096, description="width of the fusion head")
    dropout: float = Field(default=_M.dropout, ge=0.0, le=0.9, description="dropout in the fusion head")
    modality_dropout: float = Field(
        default=_M.modality_dropout, ge=0.0, le=0.5, description="chance of hiding a modality in training"
    )
    members: int = Field(
        default=_M.members,
        ge=1,
        le=16,
        description="fusion heads trained side by side on the same features, probabilities averaged",
    )
    knn_weight: float = Field(
        default=_M.knn_weight,
        ge=0.0,
        le=1.0,
        description="weight of the nearest training rows' vote in each prediction (0: none): the 16 rows"
        " the model was fitted on whose fusion vectors are closest vote for their labels (docs/QUALITY.md,"
        " session 27); rows with an image and a text only; needs members 1",
    )
    image_size: int = Field(default=_M.image_size, ge=16, le=1024, description="square input size, pixels")
    max_text_tokens: int = Field(
        default=_M.max_text_tokens, ge=1, le=512, description="longer texts are truncated"
    )
    text_image_tags: int = Field(
        default=_M.text_image_tags,
        ge=0,
        le=10,
        description="how many of the photo's likeliest ImageNet classes are appended to its text before the"
        " text encoder reads it (0: none). The default applies where the recipe can tag (a pretrained"
        " efficientnet_lite, a text encoder, finetune none or text) and is 0 elsewhere; asking for tags"
        " where it cannot is refused",
    )
    vocab_size: int = Field(default=_M.vocab_size, ge=2, le=1_000_000, description="bow/lstm vocabulary")
    embed_dim: int = Field(default=_M.embed_dim, ge=1, le=4096, description="bow / lstm embedding width")
    epochs: int = Field(
        default=_T.epochs, ge=1, le=500, description="most epochs (early stopping may end sooner)"
    )
    batch_size: int = Field(
        default=_T.batch_size, ge=1, le=4096, description="the global batch: at least 2 x nproc rows"
    )
    lr: float = Field(default=_T.lr, gt=0.0, le=1.0, description="peak learning rate of the head")
    encoder_lr: float = Field(default=_T.encoder_lr, ge=0.0, le=1.0, description="for fine-tuned encoders")
    weight_decay: float = Field(default=_T.weight_decay, ge=0.0, le=10.0, description="AdamW weight decay")
    warmup_ratio: float = Field(
        default=_T.warmup_ratio, ge=0.0, le=0.5, description="share of the steps spent warming up"
    )
    schedule: ScheduleName = Field(
        default=_T.schedule, description="learning-rate schedule after the warm-up"
    )
    grad_clip: float = Field(default=_T.grad_clip, ge=0.0, le=1000.0, description="0 disables clipping")
    patience: int = Field(default=_T.patience, ge=0, le=500, description="early stopping; 0 disables")
    class_weighted: bool = Field(
        default=_T.class_weighted, description="weight the loss by inverse label frequency (imbalanced data)"
    )
    label_smoothing: float = Field(
        default=_T.label_smoothing, ge=0.0, le=0.5, description="share of each target spread over all classes"
    )
    augment: bool = Field(default=_T.augment, description="random crops and flips of the training images")
    seed: int = Field(
        default=_T.seed, ge=0, le=2**31 - 1, description="seed of the split, shuffling and init"
    )
    finetune: FinetuneMode = Field(
        default=_T.finetune,
        description=(
            "freeze the pretrained encoders (none), fine-tune their last block or all of them, or all of"
            " the text encoder only (text: the image features stay cached)"
        ),
    )
    finetune_layers: int = Field(
        default=_T.finetune_layers,
        ge=0,
        le=max(TEXT_ENCODER_LAYERS.values()),
        description=(
            "with finetune text: how many of the pretrained text encoder's top transformer layers train"
            " (0: all of it; minilm has 6); the layers below run once per job. Other modes, and bow / lstm"
            " (trained from scratch, whole), ignore it"
        ),
    )
    metric: MetricName = Field(
        default=_T.metric,
        description="validation metric for early stopping and for promote=if_better",
    )
    keep: KeptEpoch = Field(
        default=_T.keep,
        description=(
            "which epoch's weights the job keeps: the best by the validation metric (early stopping), or the"
            " last (every epoch runs; validation is still measured and reported)"
        ),
    )
    nproc: int = Field(
        default=_T.nproc,
        ge=1,
        le=256,
        description="training processes on the worker's machine (data-parallel via torchrun, one per GPU);"
        " more than its GPUs (CPUs without CUDA) fails the job at its start",
    )

    def recorded(self) -> dict[str, Any]:
        """The params as a job records and runs them: `text_image_tags` as resolved for this recipe (0 where
        it cannot tag), so the job says what it trains and a default never turns into an explicit ask."""
        values = self.model_dump()
        values["text_image_tags"] = self.configs(())[0].text_image_tags
        return values

    def configs(
        self,
        labels: Sequence[str],
        *,
        device: str = "auto",
        val_fraction: float | None = None,
        cv_folds: int = 0,
    ) -> tuple[ModelConfig, TrainConfig]:
        """The model package's configs for this recipe; ValueError("<field>: ...") when they reject it."""
        values = self.model_dump()
        model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
        train_values = {key: value for key, value in values.items() if key not in model_keys}
        train_values["device"] = device
        train_values["kfold"] = cv_folds
        if val_fraction is not None:
            train_values["val_fraction"] = val_fraction
        model_values = {key: value for key, value in values.items() if key in model_keys}
        model_config = ModelConfig.from_dict({**model_values, "labels": tuple(labels)})
        train_config = TrainConfig.from_dict(train_values)
        problem = image_tags_problem(model_config, train_config)
        if "text_image_tags" in self.model_fields_set and self.text_image_tags and problem:
            raise ValueError(f"text_image_tags: {problem}")
        return resolve_image_tags(model_config, train_config), train_config


class CrossValidation(BaseModel):
    """k-fold cross-validation of the recipe before the final model is trained."""

    model_config = ConfigDict(extra="forbid", strict=True)

    folds: int = Field(ge=2, le=20, description="k stratified folds, 2 to 20")


class JobCreate(BaseModel):
    """A training job: what to train on, how, and whether the result goes live."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dataset: DatasetRef
    validation: str | float | None = Field(
        None,
        description="another dataset reference (its labels must be among the training labels), a fraction"
        f" of the training set to hold out (0 < fraction <= 0.5, stratified), or null for {_T.val_fraction}",
        examples=["demo:dev", 0.2],
    )
    test: DatasetRef | None = Field(
        None,
        description="a dataset reference measured once on the final model and reported apart"
        " (`metrics.test`); never used for early stopping, model selection or promotion",
        examples=["demo:dev"],
    )
    cv: CrossValidation | None = Field(
        None,
        description="k-fold cross-validation first (per-fold and mean/std reports in `metrics.cv`), then"
        " one model on all the data for the folds' median best epoch; `validation` may then only be a"
        " fraction (each fold's early-stopping slice)",
        examples=[{"folds": 5}],
    )
    params: TrainParams = Field(
        default_factory=TrainParams, description="the recipe; fields left out keep their defaults"
    )
    promote: Literal["never", "always", "if_better"] = Field(
        "if_better",
        description="if_better: only when the validation metric (with cv: its mean over the held-out folds)"
        " beats the active model's recorded validation metric (or none is active)",
    )
    skip_invalid: bool = Field(
        False,
        description="drop invalid rows (duplicates, missing images, ...) of the training and validation"
        " datasets instead of refusing them; the job's metrics count the rows dropped",
    )

    @field_validator("validation")
    @classmethod
    def _check_validation(cls, value: str | float | None) -> str | float | None:
        """One error naming `validation` whichever form was meant (a union would report one per member)."""
        if isinstance(value, str) and not _REF.fullmatch(value):
            raise ValueError("expected a dataset reference 'name' or 'name:split', or a fraction")
        if isinstance(value, float) and not 0.0 < value <= 0.5:
            raise ValueError("a validation fraction must be > 0 and <= 0.5")
        return value


class JobProgress(BaseModel):
    """Where a running job is: stage, epoch and step, latest loss, estimated time left."""

    stage: str = Field(description="encoding, training, evaluating, or done once the job succeeded")
    epoch: int = Field(description="current epoch, from 1")
    epochs: int = Field(description="most epochs of the run")
    step: int = Field(description="steps (or items while encoding) done in this stage")
    steps: int = Field(description="steps (or items) of this stage")
    loss: float | None = Field(None, description="latest training loss")
    eta_s: float | None = Field(None, description="estimated seconds left")
    fraction: float = Field(description="progress of the current stage, 0 to 1")
    fold: int = Field(0, description="cross-validation fold being trained, 1 to folds; 0 otherwise")
    folds: int = Field(0, description="number of cross-validation folds; 0 when not cross-validating")


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class JobPublic(BaseModel):
    """A job with its status, progress, per-epoch history, final metrics and resulting model version."""

    id: str = Field(description="the job id")
    status: JobStatus = Field(description="queued, running, succeeded, failed or cancelled")
    dataset: str = Field(description="the training dataset reference")
    validation: str | float | None = Field(description="validation dataset reference or held-out fraction")
    test: str | None = Field(description="the test split, measured on the final model only")
    cv: dict[str, Any] | None = Field(description='cross-validation settings, e.g. {"folds": 5}')
    params: dict[str, Any] = Field(description="the full training recipe, defaults filled in")
    promote: str = Field(description="never, always or if_better")
    skip_invalid: bool = Field(description="invalid dataset rows are dropped instead of failing the job")
    created_at: datetime = Field(description="when the job was queued (UTC)")
    started_at: datetime | None = Field(description="when a worker started it")
    finished_at: datetime | None = Field(description="when it succeeded, failed or was cancelled")
    queue_position: int | None = Field(None, description="1 = next to run; null unless queued")
    cancel_requested: bool = Field(description="a cancel was asked for; a running job stops at its next step")
    progress: JobProgress | None = Field(description="null until the worker reports")
    history: list[dict[str, Any]] = Field(description="per finished epoch: loss, validation metrics")
    metrics: dict[str, Any] | None = Field(
        description="validation reports (fusion, image_only, text_only; with cv their means over the"
        " held-out folds), best epoch, promotion decision, invalid rows skipped (`skipped_rows`), the"
        " test split's reports (`test`) and the cross-validation folds with mean and std (`cv`)"
    )
    model_version: str | None = Field(description="the version the job saved, once it succeeded")
    promoted: bool = Field(description="whether that version was made active")
    error: str | None = Field(description="why the job failed")

    @classmethod
    def from_job(cls, job: Job, *, queue_position: int | None = None) -> JobPublic:
        """Build from a job-store row."""
        return cls(
            id=job.id,
            status=job.status,
            dataset=job.dataset,
            validation=job.validation,
            test=job.test,
            cv=job.cv,
            params=job.params,
            promote=job.promote,
            skip_invalid=job.skip_invalid,
            created_at=datetime.fromtimestamp(job.created_at, UTC),
            started_at=_time(job.started_at),
            finished_at=_time(job.finished_at),
            queue_position=queue_position,
            cancel_requested=job.cancel_requested,
            progress=JobProgress.model_validate(job.progress) if job.progress else None,
            history=job.history,
            metrics=job.metrics,
            model_version=job.model_version,
            promoted=job.promoted,
            error=job.error,
        )


class JobList(BaseModel):
    """Jobs newest first, with the number of jobs in each status."""

    jobs: list[JobPublic] = Field(description="the page of jobs, newest first")
    counts: dict[str, int] = Field(description="jobs per status over the whole store")
