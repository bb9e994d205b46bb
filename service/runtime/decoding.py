"""The service's image policy: only the configured formats are decoded (checked from the header)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from PIL import Image

from model.images import ImageDecodeError

if TYPE_CHECKING:
    from model.predictor import BasePredictor


class ImagePolicy:
    """Callable the batcher decodes with: format check, then ``predictor.preprocess_image``.

    The pixel limit is the predictor's own (``max_pixels``, checked by ``model.images.load_image``).
    """

    def __init__(self, allowed_types: Iterable[str]) -> None:
        self.allowed_types = tuple(t.lower() for t in allowed_types)

    def __call__(self, predictor: BasePredictor, data: bytes) -> Any:
        """Preprocessed input tensor for ``predictor``; ``ImageDecodeError`` when the image is refused."""
        self.check(data)
        return predictor.preprocess_image(data)

    def check(self, data: bytes) -> None:
        """Refuse formats that are not allowed, from the header only (cheap)."""
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").lower()
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError("too_many_pixels", str(exc)) from exc
        except Exception:  # not identifiable here; the model's decoder reports the precise reason
            return
        if fmt not in self.allowed_types:
            allowed = ", ".join(self.allowed_types)
            raise ImageDecodeError(
                "unsupported_format", f"{fmt.upper() or 'this'} images are not accepted ({allowed})"
            )
