"""Builders of real test inputs: image bytes, tiny configs and tiny checkpoints (tests, bench, scripts)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.fusion import FusionClassifier
from model.text import Vocabulary, build_vocabulary
from service.settings import Settings

Color = tuple[int, int, int]
# The signatures of the tests' `make_settings` and `make_version` fixtures.
SettingsFactory = Callable[..., Settings]
VersionFactory = Callable[..., str]

SAMPLE_TEXTS = (
    "What a lovely sunny day #happy",
    "RT @friend: this is the worst traffic ever http://t.co/xyz",
    "I love this so much!",
    "terrible service, never again",
)


def make_image(
    color: Color = (200, 40, 40), size: tuple[int, int] = (32, 32), *, mode: str = "RGB"
) -> Image.Image:
    """A PIL image in ``mode`` whose left half is ``color`` and right half a darker shade (not flat)."""
    width, height = size
    arr = np.empty((height, width, 3), dtype=np.uint8)
    arr[:, : max(1, width // 2)] = color
    arr[:, max(1, width // 2) :] = [c // 2 for c in color]
    img = Image.fromarray(arr, mode="RGB")
    if mode == "RGB":
        return img
    if mode == "I;16":
        return Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    if mode in ("RGBA", "LA"):
        img = img.convert("RGBA")
        img.putalpha(255)
        return img.convert(mode)
    return img.convert(mode)


def encode_image(img: Image.Image, fmt: str, **save_kwargs: Any) -> bytes:
    """Encode ``img`` as ``fmt`` (e.g. "JPEG", "PNG", "GIF", "WEBP", "BMP")."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def make_jpeg(
    color: Color = (200, 40, 40),
    size: tuple[int, int] = (32, 32),
    *,
    mode: str = "RGB",
    exif_orientation: int | None = None,
    quality: int = 90,
) -> bytes:
    """Real JPEG bytes (mode RGB, L or CMYK), optionally tagged with an EXIF orientation."""
    img = make_image(color, size, mode=mode)
    kwargs: dict[str, Any] = {"quality": quality}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    return encode_image(img, "JPEG", **kwargs)


def make_png(color: Color = (40, 200, 40), size: tuple[int, int] = (32, 32), *, mode: str = "RGB") -> bytes:
    """Real PNG bytes in ``mode`` (RGB, RGBA, L, LA, P, 1, I;16)."""
    return encode_image(make_image(color, size, mode=mode), "PNG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height`` with no pixel data (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """A fast cnn + bow model config (32 px images, small widths); ``overrides`` replace fields."""
    fields: dict[str, Any] = {
        "image_encoder": "cnn",
        "text_encoder": "bow",
        "fusion": "gated",
        "labels": ("negative", "positive"),
        "hidden_dim": 16,
        "dropout": 0.0,
        "modality_dropout": 0.2,
        "pretrained": False,
        "image_size": 32,
        "max_text_tokens": 16,
        "embed_dim": 16,
    }
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_vocabulary(config: ModelConfig | None = None) -> Vocabulary:
    """A vocabulary over ``SAMPLE_TEXTS``."""
    return build_vocabulary(SAMPLE_TEXTS, config or tiny_model_config())


def build_tiny_model(**overrides: Any) -> FusionClassifier:
    """An untrained tiny model (see ``tiny_model_config``) in eval mode."""
    config = tiny_model_config(**overrides)
    return FusionClassifier.build(config, tiny_vocabulary(config)).eval()


def save_tiny_checkpoint(
    path: Path,
    labels: tuple[str, ...] = ("negative", "positive"),
    *,
    metrics: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """Build an untrained tiny model with ``labels`` and save it as a checkpoint directory at ``path``.

    ``metrics`` are the validation metrics recorded with it (``{"accuracy": 0.5}`` unless given).
    """
    model = build_tiny_model(labels=tuple(labels), **overrides)
    return save_checkpoint(
        path, model, metrics=metrics or {"accuracy": 0.5}, dataset_fingerprint="tiny-test-fingerprint"
    )
