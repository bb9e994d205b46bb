"""Image decoding (safe against bombs and odd modes) and the model's pixel transforms."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from model.config import ModelConfig

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000
_WHITE = (255, 255, 255)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (b"\xff\xd8\xff", _PNG_SIGNATURE, b"GIF87a", b"GIF89a", b"BM")


class ImageDecodeError(ValueError):
    """An input is not a usable image; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any decoded mode to RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's own conversion clips 16-bit values at 255 (an almost white picture); rescale instead.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "La", "RGBa") or (img.mode == "L" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, _WHITE)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG IHDR chunk, read even when the rest of the file is missing."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def load_image(
    source: bytes | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Decode JPEG/PNG/WebP/GIF/BMP bytes or a file to an upright RGB image, or raise ``ImageDecodeError``.

    The pixel count is checked from the header before decoding; with ``draft_size`` a JPEG is decoded
    at the smallest DCT scale that keeps both sides >= ``draft_size`` (much faster for big photos).
    """
    try:
        data = source.read_bytes() if isinstance(source, Path) else bytes(source)
    except OSError as exc:
        raise ImageDecodeError("unreadable", str(exc)) from exc
    if not data:
        raise ImageDecodeError("empty", "no bytes")
    png_size = _png_header_size(data)
    if png_size is not None and png_size[0] * png_size[1] > max_pixels:
        raise ImageDecodeError("too_many_pixels", f"{png_size[0]}x{png_size[1]} exceeds {max_pixels} pixels")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        if _looks_like_image(data):
            raise ImageDecodeError("truncated", "image header is incomplete or damaged") from exc
        raise ImageDecodeError("unsupported_format", f"not a {'/'.join(FORMATS)} image") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("corrupt", f"image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError("too_many_pixels", f"{width}x{height} exceeds {max_pixels} pixels")
    if draft_size is not None and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    try:
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        reason = "truncated" if "truncated" in str(exc).lower() or isinstance(exc, EOFError) else "corrupt"
        raise ImageDecodeError(reason, str(exc) or type(exc).__name__) from exc


class ImageTransform:
    """PIL image -> normalised tensor [3, S, S]: short-side resize and center crop, or light augmentation.

    The evaluation path is torchvision's ``Resize(S) + CenterCrop(S) + ToTensor() + Normalize`` written
    out on PIL and torch (``tests/model/test_images.py`` holds the two equal to the bit): importing
    torchvision imports ``torch._dynamo``, which took about half of the service's start-up. The training
    augmentation imports torchvision when a training transform is built.
    """

    def __init__(self, config: ModelConfig, train: bool) -> None:
        self.size = config.image_size
        self.mean = torch.tensor(config.image_mean).view(-1, 1, 1)
        self.std = torch.tensor(config.image_std).view(-1, 1, 1)
        self.augment: Callable[[Image.Image], Image.Image] | None = None
        if train:
            from torchvision import transforms

            self.augment = transforms.Compose(
                [
                    transforms.RandomResizedCrop(self.size, scale=(0.6, 1.0), antialias=True),
                    transforms.RandomHorizontalFlip(),
                    transforms.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
                ]
            )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Transform one RGB image."""
        image = (
            self.augment(image) if self.augment is not None else center_crop(self._resized(image), self.size)
        )
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return (pixels.to(torch.float32).div(255) - self.mean) / self.std

    def _resized(self, image: Image.Image) -> Image.Image:
        """The short side scaled to ``size`` (bilinear), the long side in proportion, rounded down."""
        width, height = image.size
        short, long = min(width, height), max(width, height)
        other = int(self.size * long / short)
        size = (self.size, other) if width <= height else (other, self.size)
        return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The centred ``size`` x ``size`` square of an image at least that large on both sides."""
    width, height = image.size
    top, left = round((height - size) / 2.0), round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))
