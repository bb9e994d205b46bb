"""Inference: load a checkpoint once, then classify batches of (image, text) pairs with missing modalities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.device import autocast, resolve_device
from model.fusion import FusionClassifier
from model.image_tags import tag_text
from model.images import DEFAULT_MAX_PIXELS, ImageTransform, load_image

ImageInput = bytes | Image.Image | torch.Tensor | None
Tokenize = Callable[[Sequence[str]], dict[str, torch.Tensor]]


def _no_text(texts: Sequence[str]) -> dict[str, torch.Tensor]:
    raise ValueError("text: this model has no text encoder")


@dataclass
class Prediction:
    """One item's result; the explain fields are filled only with ``explain=True``."""

    label: str
    probabilities: dict[str, float]
    modalities_used: list[str]
    image_only: dict[str, float] | None = None
    text_only: dict[str, float] | None = None
    gate: dict[str, float] | None = None


@dataclass
class BatchOutput:
    """Per-row probability lists of one forward (explain fields only when asked) and the gate weights."""

    probabilities: list[list[float]]
    image_only: list[list[float]] | None = None
    text_only: list[list[float]] | None = None
    gate: list[list[float]] | None = None


class BasePredictor:
    """What every runtime shares: preprocessing, input checks, and turning probabilities into results.

    Subclasses load a checkpoint their own way and implement ``_run`` (one forward of a batch) on
    rows that have each modality; ``runtime`` names them in the service's status and metrics.
    """

    runtime = "torch"
    device: torch.device

    def __init__(
        self,
        config: ModelConfig,
        meta: dict[str, Any],
        *,
        version: str,
        tokenize: Tokenize | None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.config = config
        self._tokenize = tokenize or _no_text
        self.labels: tuple[str, ...] = config.labels
        self.meta = meta
        self.version = version
        self.max_pixels = max_pixels
        self._transform = ImageTransform(config, train=False)

    def preprocess_image(self, data: bytes) -> torch.Tensor:
        """Decode and transform image bytes to [3, S, S]; raises ``ImageDecodeError``. Thread-safe."""
        size = self.config.image_size
        return self._transform(load_image(data, max_pixels=self.max_pixels, draft_size=size))

    def _pixels(self, image: bytes | Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image
        if isinstance(image, Image.Image):
            return self._transform(image.convert("RGB"))
        return self.preprocess_image(image)

    def _stack_pixels(self, images: Sequence[ImageInput], has_image: list[bool]) -> torch.Tensor:
        """Pixels [N, 3, S, S] of the rows that have an image."""
        return torch.stack([self._pixels(img) for img, on in zip(images, has_image, strict=True) if on])  # type: ignore[arg-type]

    def _tokens(self, texts: Sequence[str | None], has_text: list[bool]) -> dict[str, torch.Tensor]:
        """Tokenizer output [N, L] of the rows that have a text."""
        return self._tokenize([t or "" for t, on in zip(texts, has_text, strict=True) if on])

    @staticmethod
    def _with_tags(
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        tags: Sequence[Sequence[str]],
    ) -> list[str | None]:
        """``texts`` with their image's tags (``tags``: a list per row that has an image, or none at all)."""
        if not tags:
            return list(texts)
        image_rows = iter(tags)
        out: list[str | None] = []
        for text, image_on, text_on in zip(texts, has_image, has_text, strict=True):
            row_tags = next(image_rows) if image_on else []
            out.append(tag_text(text or "", row_tags) if text_on else text)
        return out

    def _present(
        self, images: Sequence[ImageInput], texts: Sequence[str | None]
    ) -> tuple[list[bool], list[bool]]:
        if len(images) != len(texts):
            raise ValueError(f"batch: {len(images)} images but {len(texts)} texts")
        has_image = [img is not None and "image" in self.config.modalities for img in images]
        has_text = [bool(t and t.strip()) and "text" in self.config.modalities for t in texts]
        for i, (img, txt) in enumerate(zip(has_image, has_text, strict=True)):
            if not (img or txt):
                wanted = " or ".join(
                    {"image": "an image", "text": "a text"}[m] for m in self.config.modalities
                )
                raise ValueError(f"item {i}: needs {wanted}")
            if not (img and txt) and not self.config.supports_missing_modality:
                raise ValueError(
                    f"item {i}: this model was trained without modality dropout and needs both inputs"
                )
        return has_image, has_text

    def _run(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        explain: bool,
    ) -> BatchOutput:
        raise NotImplementedError

    def predict_batch(
        self, images: Sequence[ImageInput], texts: Sequence[str | None], explain: bool = False
    ) -> list[Prediction]:
        """Classify items; each may lack its image or text (None or blank), but not both.

        ``images`` items are encoded bytes, PIL images, preprocessed tensors [3, S, S] or None.
        ``explain`` adds image-only / text-only probabilities and the gate weights.
        """
        has_image, has_text = self._present(images, texts)
        out = self._run(images, texts, has_image, has_text, explain)
        results = []
        for i, row in enumerate(out.probabilities):
            probs = dict(zip(self.labels, row, strict=True))
            results.append(
                Prediction(
                    label=max(probs, key=probs.__getitem__),
                    probabilities=probs,
                    modalities_used=[m for m, on in (("image", has_image[i]), ("text", has_text[i])) if on],
                    image_only=self._named(out.image_only, i) if has_image[i] else None,
                    text_only=self._named(out.text_only, i) if has_text[i] else None,
                    gate=dict(zip(("image", "text"), out.gate[i], strict=True))
                    if out.gate is not None
                    else None,
                )
            )
        return results

    def _named(self, rows: list[list[float]] | None, i: int) -> dict[str, float] | None:
        return dict(zip(self.labels, rows[i], strict=True)) if rows is not None else None

    def open_overlap_session(self, threads: int) -> bool:
        """Give runs that overlap another one their own ``threads``-thread engine; True if one opened.

        Only ONNX Runtime has per-session thread pools; on torch every run shares the process's threads.
        """
        return False

    def _warmup_inputs(self) -> tuple[list[ImageInput], list[str | None]]:
        size = self.config.image_size
        image = Image.new("RGB", (size, size), (127, 127, 127)) if "image" in self.config.modalities else None
        return [image], ["warmup" if "text" in self.config.modalities else None]

    def warmup(self) -> None:
        """Run one dummy batch so lazy initialisation (kernels, allocator) happens before real traffic."""
        self.predict_batch(*self._warmup_inputs())


class Predictor(BasePredictor):
    """A loaded checkpoint on one device (eager PyTorch), ready for ``predict_batch``."""

    def __init__(
        self,
        model: FusionClassifier,
        meta: dict[str, Any],
        *,
        version: str,
        device: str | torch.device = "cpu",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        tokenize = model.tokenize if model.text_encoder is not None else None
        super().__init__(model.config, meta, version=version, tokenize=tokenize, max_pixels=max_pixels)
        self.device = resolve_device(device)
        # Channels-last convolutions are faster on CPU as well as CUDA (docs/PERFORMANCE.md).
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Predictor:
        """Load the checkpoint directory ``path``; its name becomes ``version``."""
        path = Path(path)
        model, meta = load_checkpoint(path, device="cpu")
        return cls(model, meta, version=path.name, device=device, max_pixels=max_pixels)

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """One copy per batch; on CUDA from pinned memory, so the copy is asynchronous."""
        if self.device.type != "cuda":
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)

    def _features(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        explain: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Encoder features for the rows that have the modality (other rows stay zero and are masked):
        image, text, and the text without its image tags for ``explain`` (the text's when it has none)."""
        img_feats = txt_feats = None
        tags: list[list[str]] = []
        rows = [i for i, present in enumerate(has_image) if present]
        if rows:
            pixels = self._stack_pixels(images, has_image).contiguous(memory_format=torch.channels_last)
            encoded = self.model.encode_image(self._to_device(pixels))
            img_feats = encoded.new_zeros(len(images), encoded.shape[1])
            img_feats[rows] = encoded
            if self.model.image_tagger is not None:
                tags = self.model.image_tagger.tags(encoded)
        if not any(has_text):
            return img_feats, None, None
        tagged = self._with_tags(texts, has_image, has_text, tags)
        txt_feats = self._encode_texts(tagged, has_text)
        plain_feats = self._encode_texts(texts, has_text) if explain and tags else txt_feats
        return img_feats, txt_feats, plain_feats

    def _encode_texts(self, texts: Sequence[str | None], has_text: list[bool]) -> torch.Tensor:
        """Text features [N, D] of the rows that have a text, zeros elsewhere."""
        inputs = self._tokens(texts, has_text)
        encoded = self.model.encode_text({k: self._to_device(v) for k, v in inputs.items()})
        feats = encoded.new_zeros(len(texts), encoded.shape[1])
        feats[[i for i, present in enumerate(has_text) if present]] = encoded
        return feats

    @staticmethod
    def _probabilities(logits: torch.Tensor) -> list[list[float]]:
        return torch.softmax(logits.float(), dim=-1).cpu().tolist()

    def _run(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        explain: bool,
    ) -> BatchOutput:
        image_present = torch.tensor(has_image, device=self.device)
        text_present = torch.tensor(has_text, device=self.device)
        with torch.inference_mode(), autocast(self.device):
            img_feats, txt_feats, plain_feats = self._features(images, texts, has_image, has_text, explain)
            out = self.model.head(img_feats, txt_feats, image_present, text_present)
            result = BatchOutput(self._probabilities(out.logits))
            if explain:
                nobody = torch.zeros_like(image_present)
                result.image_only = self._probabilities(
                    self.model.head(img_feats, None, image_present, nobody).logits
                )
                result.text_only = self._probabilities(
                    self.model.head(None, plain_feats, nobody, text_present).logits
                )
                result.gate = out.gate.float().cpu().tolist() if out.gate is not None else None
        return result
