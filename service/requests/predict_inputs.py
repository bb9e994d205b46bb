"""Reading prediction inputs from requests: the single multipart form and the batch (multipart or JSON)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from service.errors import APIError, validation_error
from service.requests.bodies import (
    OVERHEAD_BYTES,
    max_text_bytes,
    read_body,
    read_multipart,
    read_upload,
    require_content_type,
)
from service.schemas.predict import BatchPredictCreate
from service.settings import Settings


@dataclass
class PredictInput:
    """One item to predict, after the request-level checks; ``error`` set when it cannot be predicted."""

    image: bytes | None = None
    text: str | None = None
    image_field: str = "image"
    text_field: str = "text"
    error: APIError | None = None


def _request_too_large(settings: Settings, items: int, field: str | None) -> APIError:
    return APIError(
        413,
        "request_too_large",
        f"request body too large: at most {items} image(s) of {settings.max_image_bytes} bytes each",
        field,
    )


def _body_limit(settings: Settings, items: int, *, base64_images: bool = False) -> int:
    image_bytes = settings.max_image_bytes * 4 // 3 + 4 if base64_images else settings.max_image_bytes
    return items * (image_bytes + max_text_bytes(settings.max_text_chars) + 1024) + OVERHEAD_BYTES


async def _read_form(
    request: Request, settings: Settings, *, items: int, image_field: str, text_field: str
) -> FormData:
    return await read_multipart(
        request,
        max_body_bytes=_body_limit(settings, items),
        max_text_bytes=max_text_bytes(settings.max_text_chars),
        max_parts=2 * items + 8,
        text_field=text_field,
        too_large=lambda: _request_too_large(settings, items, image_field if items == 1 else None),
    )


def _check_fields(form: FormData, allowed: tuple[str, ...]) -> None:
    for key in form:
        if key not in allowed:
            expected = " and/or ".join(repr(name) for name in allowed)
            raise APIError(422, "unknown_field", f"unknown form field {key!r}; expected {expected}", key)


async def _image_part(value: UploadFile | str, field: str, settings: Settings) -> bytes | None:
    if not isinstance(value, UploadFile):
        if not value:
            return None  # an empty part: no image for this item
        raise APIError(422, "not_a_file", f"{field}: must be a file upload, not a text field", field)
    data = await read_upload(value)
    if not data:
        if value.filename:
            raise APIError(422, "invalid_image", f"{field}: the file is empty", field)
        return None  # an empty file input (e.g. from the docs page): no image
    _check_image_bytes(data, field, settings)
    return data


def _check_image_bytes(data: bytes, field: str, settings: Settings) -> None:
    """Reject an image larger than `max_image_bytes` with a 413."""
    if len(data) > settings.max_image_bytes:
        raise APIError(
            413,
            "image_too_large",
            f"{field}: {len(data)} bytes exceeds the limit of {settings.max_image_bytes}",
            field,
        )


def _text_part(value: UploadFile | str | None, field: str, settings: Settings) -> str | None:
    if isinstance(value, UploadFile):
        raise APIError(422, "not_a_text", f"{field}: must be a text field, not a file", field)
    if value is None or not value.strip():
        return None
    if len(value) > settings.max_text_chars:
        raise APIError(
            413,
            "text_too_long",
            f"{field}: {len(value)} characters exceeds the limit of {settings.max_text_chars}",
            field,
        )
    return value


async def read_single(request: Request, settings: Settings) -> PredictInput:
    """The ``image`` file and ``text`` field of a ``POST /predict`` form, checked against the limits."""
    require_content_type(request, "multipart/form-data")
    form = await _read_form(request, settings, items=1, image_field="image", text_field="text")
    try:
        _check_fields(form, ("image", "text"))
        for name in ("image", "text"):
            if len(form.getlist(name)) > 1:
                raise APIError(
                    422, "repeated_field", f"{name}: send it once (use /predict/batch for several)", name
                )
        raw_image = form.get("image")
        image = await _image_part(raw_image, "image", settings) if raw_image is not None else None
        return PredictInput(image, _text_part(form.get("text"), "text", settings))
    finally:
        await form.close()


async def read_batch(request: Request, settings: Settings) -> list[PredictInput]:
    """The items of a ``POST /predict/batch`` body; an item failing a limit carries its own error."""
    media_type = require_content_type(request, "multipart/form-data", "application/json")
    if media_type == "application/json":
        return await _items_from_json(request, settings)
    return await _items_from_form(request, settings)


async def _items_from_form(request: Request, settings: Settings) -> list[PredictInput]:
    form = await _read_form(
        request, settings, items=settings.max_batch_items, image_field="images", text_field="texts"
    )
    try:
        _check_fields(form, ("images", "texts"))
        raw_images, raw_texts = form.getlist("images"), form.getlist("texts")
        if raw_images and raw_texts and len(raw_images) != len(raw_texts):
            raise APIError(
                422,
                "unpaired_items",
                f"got {len(raw_images)} images and {len(raw_texts)} texts; they pair by order, "
                "so send as many of each (an empty part for a missing one)",
                "texts",
            )
        count = max(len(raw_images), len(raw_texts))
        _check_count(count, settings, "images" if raw_images else "texts")
        items = [PredictInput(image_field=f"images[{i}]", text_field=f"texts[{i}]") for i in range(count)]
        for i, item in enumerate(items):
            try:  # a bad part is that item's error, not the request's
                if raw_images:
                    item.image = await _image_part(raw_images[i], item.image_field, settings)
                if raw_texts:
                    item.text = _text_part(raw_texts[i], item.text_field, settings)
            except APIError as exc:
                item.error = exc
        return items
    finally:
        await form.close()


async def _items_from_json(request: Request, settings: Settings) -> list[PredictInput]:
    body = await read_body(
        request,
        max_body_bytes=_body_limit(settings, settings.max_batch_items, base64_images=True),
        too_large=lambda: _request_too_large(settings, settings.max_batch_items, None),
    )
    try:
        payload = BatchPredictCreate.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise APIError(400, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from exc
        raise validation_error(errors) from exc
    _check_count(len(payload.items), settings, "items")
    items = []
    for i, raw in enumerate(payload.items):
        item = PredictInput(image_field=f"items.{i}.image_base64", text_field=f"items.{i}.text")
        try:  # a bad item is that item's error, not the request's
            item.image = _base64_image(raw.image_base64, item.image_field, settings)
            item.text = _text_part(raw.text, item.text_field, settings)
        except APIError as exc:
            item.error = exc
        items.append(item)
    return items


def _base64_image(encoded: str | None, field: str, settings: Settings) -> bytes | None:
    if encoded is None:
        return None
    if len(encoded) > settings.max_image_bytes * 4 // 3 + 4:
        raise APIError(
            413, "image_too_large", f"{field}: exceeds the limit of {settings.max_image_bytes} bytes", field
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(422, "invalid_base64", f"{field}: not valid base64 ({exc})", field) from exc
    _check_image_bytes(data, field, settings)
    return data or None


def _check_count(count: int, settings: Settings, field: str) -> None:
    if count == 0:
        raise APIError(422, "no_items", "the batch is empty: send at least one image or text", field)
    if count > settings.max_batch_items:
        raise APIError(
            413,
            "too_many_items",
            f"{count} items exceeds the limit of {settings.max_batch_items} per batch",
            field,
        )
