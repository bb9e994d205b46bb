"""Prediction routes: one image + text pair, or a batch (multipart or JSON with base64 images)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from model.images import ImageDecodeError
from service.deps import BatcherDep, ModelHolderDep, ModelLoaderDep, SettingsDep
from service.errors import APIError
from service.requests.predict_inputs import PredictInput, read_batch, read_single
from service.runtime.batcher import (
    BatcherStoppedError,
    MicroBatcher,
    NotReadyError,
    QueueFullError,
    ServedPrediction,
)
from service.runtime.model_holder import ModelHolder
from service.runtime.model_loader import ModelLoader
from service.schemas import examples
from service.schemas.common import (
    NOT_READY,
    UNAUTHORIZED,
    ErrorDetail,
    ErrorDoc,
    error_responses,
    example_response,
)
from service.schemas.predict import (
    BatchItemCreate,
    BatchItemError,
    BatchPredictionPublic,
    PredictionPublic,
)
from service.security import PredictAuth

router = APIRouter(prefix="/predict", tags=["predict"], dependencies=[PredictAuth])

ExplainQuery = Annotated[
    bool,
    Query(description="Also return the image-only and text-only predictions and the fusion gate weights"),
]

_IMAGE_PART = {
    "type": "string",
    "format": "binary",
    "description": "Image file (JPEG, PNG, WebP, GIF or BMP)",
}
_TEXT_PART = {
    "type": "string",
    "description": "Text paired with the image (UTF-8, limited to max_text_chars)",
    "example": "best day ever at the beach",
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": _IMAGE_PART, "text": _TEXT_PART}},
            }
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": _IMAGE_PART},
                        "texts": {"type": "array", "items": _TEXT_PART, "example": ["so happy", "so sad"]},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "items": BatchItemCreate.model_json_schema(),
                        }
                    },
                },
                "example": examples.BATCH_JSON_REQUEST,
            },
        },
    }
}
_IMAGE_ERRORS: tuple[ErrorDoc, ...] = (
    (413, "image_too_large", "image: 12582912 bytes exceeds the limit of 10485760", "image"),
    (413, "image_too_many_pixels", "image: 9000x9000 exceeds 40000000 pixels", "image"),
    (415, "unsupported_image_type", "image: not a JPEG/PNG/WEBP/GIF/BMP image", "image"),
    (422, "invalid_image", "image: cannot decode the image (truncated: image header is damaged)", "image"),
)
_COMMON_ERRORS: tuple[ErrorDoc | int, ...] = (
    (400, "malformed_multipart", "malformed multipart body: it ends before the closing boundary", None),
    UNAUTHORIZED,
    (413, "text_too_long", "text: 6000 characters exceeds the limit of 5000", "text"),
    (415, "unsupported_media_type", "expected multipart/form-data, got text/plain", None),
    (422, "unknown_field", "unknown form field 'caption'; expected 'image' and/or 'text'", "caption"),
    (422, "missing_text", "text: required, model 20261202-011103-524377-9ce606 needs both inputs", "text"),
    (422, "invalid_input", "text: no usable tokens after preprocessing", "text"),
    (503, "overloaded", "the prediction queue is full (256 requests waiting); retry in 1 s", None),
    NOT_READY,
    (503, "shutting_down", "the server is shutting down", None),
)
_ERRORS = error_responses(
    *_COMMON_ERRORS,
    *_IMAGE_ERRORS,
    (422, "missing_input", "nothing to predict: send image (image) and/or text (text)", "image"),
    (422, "repeated_field", "image: send it once (use /predict/batch for several)", "image"),
)
_BATCH_ERRORS = error_responses(
    *_COMMON_ERRORS,
    (400, "invalid_json", "the body is not valid JSON: Expecting value", None),
    (413, "too_many_items", "65 items exceeds the limit of 64 per batch", "images"),
    (413, "request_too_large", "request body too large: at most 64 image(s) of 10485760 bytes each", None),
    (
        422,
        "unpaired_items",
        "got 2 images and 1 texts; they pair by order, so send as many of each (an empty"
        " part for a missing one)",
        None,
    ),
    (422, "no_items", "the batch is empty: send at least one image or text", "items"),
    (422, "invalid_base64", "items[0].image_base64: not valid base64", "items[0].image_base64"),
)


def _check_modalities(holder: ModelHolder, loader: ModelLoader, item: PredictInput) -> PredictInput:
    """Drop inputs the model has no encoder for; refuse missing ones it cannot do without."""
    predictor = holder.predictor
    if predictor is None:
        raise APIError(503, "not_ready", loader.not_ready_reason or "no model is loaded")
    config = predictor.config
    if "image" not in config.modalities:
        item.image = None
    if "text" not in config.modalities:
        item.text = None
    if item.image is None and item.text is None:
        wanted = " and/or ".join(
            f"{m} ({item.image_field if m == 'image' else item.text_field})" for m in config.modalities
        )
        field = item.image_field if "image" in config.modalities else item.text_field
        item.error = APIError(422, "missing_input", f"nothing to predict: send {wanted}", field)
    elif not config.supports_missing_modality:
        for modality, value, field in (
            ("image", item.image, item.image_field),
            ("text", item.text, item.text_field),
        ):
            if value is None:
                item.error = APIError(
                    422,
                    f"missing_{modality}",
                    f"{field}: required, model {predictor.version} needs both inputs",
                    field,
                )
    return item


def _decode_error(exc: ImageDecodeError, field: str) -> APIError:
    if exc.reason == "too_many_pixels":
        return APIError(413, "image_too_many_pixels", f"{field}: {exc.detail}", field)
    if exc.reason == "unsupported_format":
        return APIError(415, "unsupported_image_type", f"{field}: {exc.detail}", field)
    return APIError(
        422, "invalid_image", f"{field}: cannot decode the image ({exc.reason}: {exc.detail})", field
    )


def _service_error(exc: Exception, loader: ModelLoader) -> APIError:
    if isinstance(exc, QueueFullError):
        return APIError(503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, NotReadyError):
        return APIError(503, "not_ready", loader.not_ready_reason or str(exc))
    assert isinstance(exc, BatcherStoppedError)
    return APIError(503, "shutting_down", str(exc), headers={"Retry-After": "5"})


async def _predict_one(batcher: MicroBatcher, item: PredictInput, explain: bool) -> ServedPrediction:
    try:
        return await batcher.predict(item.image, item.text, explain=explain)
    except ImageDecodeError as exc:
        raise _decode_error(exc, item.image_field) from exc
    except ValueError as exc:  # the model refused this input (e.g. text with no usable tokens)
        raise APIError(422, "invalid_input", str(exc)) from exc


@router.post(
    "",
    summary="Classify one image + text pair",
    responses={
        200: example_response(examples.PREDICTION_EXPLAINED, "The prediction (explain=true)"),
        **_ERRORS,
    },
    openapi_extra=_PREDICT_BODY,
)
async def predict(
    request: Request,
    settings: SettingsDep,
    batcher: BatcherDep,
    holder: ModelHolderDep,
    loader: ModelLoaderDep,
    explain: ExplainQuery = False,
) -> PredictionPublic:
    """Multipart form with an `image` file and a `text` field. Either may be left out when the model
    copes with a missing modality; `modalities_used` says what was used. Limits: `max_image_bytes` (413),
    `max_image_pixels` (413), allowed image types (415), `max_text_chars` (413)."""
    item = _check_modalities(holder, loader, await read_single(request, settings))
    if item.error is not None:
        raise item.error
    try:
        served = await _predict_one(batcher, item, explain)
    except (QueueFullError, NotReadyError, BatcherStoppedError) as exc:
        raise _service_error(exc, loader) from exc
    return PredictionPublic.from_served(served, explain)


def _item_error(exc: APIError) -> BatchItemError:
    return BatchItemError(error=ErrorDetail(code=exc.code, message=exc.message, field=exc.field))


@router.post(
    "/batch",
    summary="Classify several image + text pairs",
    responses={
        200: example_response(examples.BATCH_PREDICTION, "One entry per item, in order"),
        **_BATCH_ERRORS,
    },
    openapi_extra=_BATCH_BODY,
)
async def predict_batch(
    request: Request,
    settings: SettingsDep,
    batcher: BatcherDep,
    holder: ModelHolderDep,
    loader: ModelLoaderDep,
    explain: ExplainQuery = False,
) -> BatchPredictionPublic:
    """Either multipart with repeated `images` files and `texts` fields, paired by order (an empty part
    stands for a missing input), or JSON `{"items": [{"image_base64": ..., "text": ...}]}`. Predictions
    come back in order; an item that cannot be predicted gets an `error` entry and does not affect the
    others. At most `max_batch_items` items."""
    items = await read_batch(request, settings)
    for item in items:
        if item.error is None:
            _check_modalities(holder, loader, item)
    todo = [item for item in items if item.error is None]
    try:
        batcher.check_capacity(len(todo))
    except QueueFullError as exc:
        raise _service_error(exc, loader) from exc
    results = await asyncio.gather(
        *(_predict_one(batcher, item, explain) for item in todo), return_exceptions=True
    )
    answers: dict[int, PredictionPublic | BatchItemError] = {}
    for item, result in zip(todo, results, strict=True):
        if isinstance(result, APIError):
            answers[id(item)] = _item_error(result)
        elif isinstance(result, (QueueFullError, NotReadyError, BatcherStoppedError)):
            raise _service_error(result, loader) from result
        elif isinstance(result, BaseException):
            raise result
        else:
            answers[id(item)] = PredictionPublic.from_served(result, explain)
    return BatchPredictionPublic(
        predictions=[
            _item_error(item.error) if item.error is not None else answers[id(item)] for item in items
        ]
    )
