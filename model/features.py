"""A disk cache of frozen-encoder features, so each image and text is encoded once across epochs and runs.

Layout: ``root/<modality>-<encoder key>/`` holds ``encoder.json`` (what the key stands for) and shards:
``<shard>.safetensors`` (features [M, D]) with ``<shard>.json`` (the M sample keys, in row order). The
encoder key hashes the encoder's weight identity and its preprocessing; a sample key hashes the image
bytes or the raw text. Because samples are keyed one by one, subsets (validation splits, k folds) and
later datasets that share files reuse what is already there. Every file is written under a temporary
name and renamed into place, and a shard counts only once its JSON exists, so concurrent jobs never read
half-written files; two jobs computing the same shard write identical files under the same name.

A shard that is unusable on disk (its key list unreadable, its tensor file missing, truncated or not
[keys, encoder width] float32) is skipped with a warning and its samples are encoded again; the new
shard replaces it when it holds the same samples. A write that fails (a full disk) raises
`FeatureCacheError` and leaves no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.atomic import write_atomic
from model.datasets import Dataset
from model.device import autocast
from model.fusion import FusionClassifier
from model.loading import image_batches, index_batches

FORMAT = 1
MODALITIES = ("image", "text")
ProgressCallback = Callable[[int, int], None]  # (items encoded so far, items to encode)

log = logging.getLogger(__name__)


class FeatureCacheError(RuntimeError):
    """The cache could not store new features (a full disk, ...); the message says why."""


@dataclass(frozen=True)
class Features:
    """Per-sample features of a dataset ([N, D] in sample order); None for modalities not computed."""

    image: torch.Tensor | None = None
    text: torch.Tensor | None = None


def frozen_modalities(model: FusionClassifier) -> tuple[str, ...]:
    """The modalities whose encoder exists and trains no weight, i.e. whose features can be cached."""
    encoders = {"image": model.image_encoder, "text": model.text_encoder}
    return tuple(m for m, enc in encoders.items() if enc is not None and enc.frozen)


def encoder_key(model: FusionClassifier, modality: str) -> str:
    """Hash of the encoder's weights identity and every config field that changes its input."""
    encoder = model.image_encoder if modality == "image" else model.text_encoder
    if encoder is None:
        raise ValueError(f"{modality}: this model has no {modality} encoder")
    config = model.config.to_dict()
    prefix = "image_" if modality == "image" else "text_"
    preprocessing = {k: v for k, v in config.items() if k.startswith(prefix) and k != f"{modality}_encoder"}
    if modality == "text":
        preprocessing["max_text_tokens"] = config["max_text_tokens"]
    description = {"format": FORMAT, "encoder": encoder.identity, "preprocessing": preprocessing}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def sample_keys(dataset: Dataset, modality: str) -> list[str]:
    """Content keys of every sample: the image bytes' sha256, or the raw text's."""
    if modality == "image":
        return [s.digest or hashlib.sha256(s.image.read_bytes()).hexdigest() for s in dataset.samples]
    return [
        hashlib.sha256(s.text.encode("utf-8", errors="surrogatepass")).hexdigest() for s in dataset.samples
    ]


class FeatureCache:
    """Features of frozen encoders on disk under `root` (a private temporary directory when None)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="features-") if root is None else None
        self.root = Path(self._tmp.name if self._tmp is not None else root)  # type: ignore[arg-type]

    def get_or_compute(
        self,
        model: FusionClassifier,
        dataset: Dataset,
        on_progress: ProgressCallback | None = None,
        *,
        modalities: Sequence[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> Features:
        """Features of `dataset` for `modalities` (default: the frozen ones), encoding only what is new.

        `on_progress` is called as encoding proceeds and not at all when everything is cached.
        """
        wanted = frozen_modalities(model) if modalities is None else tuple(modalities)
        stores = {m: _Store(self.root / f"{m}-{encoder_key(model, m)}", _width(model, m)) for m in wanted}
        keys = {m: sample_keys(dataset, m) for m in wanted}
        missing = {m: stores[m].missing(keys[m]) for m in wanted}
        total = sum(len(todo) for todo in missing.values())
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if on_progress is not None:
                on_progress(done, total)

        if total and on_progress is not None:
            on_progress(0, total)
        was_training = model.training
        model.eval()
        try:
            for modality in wanted:
                todo = missing[modality]
                if todo:
                    first_row = {key: i for i, key in reversed(list(enumerate(keys[modality])))}
                    rows = [first_row[key] for key in todo]
                    encode = _encode_images if modality == "image" else _encode_texts
                    feats = encode(model, dataset, rows, batch_size, num_workers, advance)
                    stores[modality].add(todo, feats, model, modality)
        finally:
            model.train(was_training)
        return Features(**{m: stores[m].gather(keys[m]) for m in wanted})


def _width(model: FusionClassifier, modality: str) -> int:
    encoder = model.image_encoder if modality == "image" else model.text_encoder
    if encoder is None:
        raise ValueError(f"{modality}: this model has no {modality} encoder")
    return encoder.out_dim


class _Store:
    """The shards of one (modality, encoder key) directory, whose features are `width` wide."""

    def __init__(self, directory: Path, width: int) -> None:
        self.directory = directory
        self.width = width
        self._index: dict[str, tuple[str, int]] = {}
        if directory.is_dir():
            for meta in sorted(directory.glob("*.json")):
                if meta.name == "encoder.json":
                    continue
                try:
                    keys = self._shard_keys(meta)
                except ValueError as exc:
                    log.warning(
                        "feature cache: shard %s is unusable, encoding its samples again: %s", meta, exc
                    )
                    continue
                for row, key in enumerate(keys):
                    self._index.setdefault(key, (meta.stem, row))

    def _shard_keys(self, meta: Path) -> list[str]:
        """The keys of a shard whose tensor file is whole and [keys, width] float32; ValueError otherwise."""
        try:
            keys = json.loads(meta.read_text(encoding="utf-8"))["keys"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable key list ({type(exc).__name__}: {exc})") from exc
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError("the key list is not a list of strings")
        try:
            # The header alone: safetensors checks that it covers the file exactly (a truncated file fails).
            with safe_open(str(meta.with_suffix(".safetensors")), "pt") as tensors:
                features = tensors.get_slice("features")
                shape, dtype = features.get_shape(), features.get_dtype()
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"unreadable tensor file ({exc})") from exc
        if shape != [len(keys), self.width] or dtype != "F32":
            raise ValueError(f"features are {dtype} {shape}, expected F32 [{len(keys)}, {self.width}]")
        return keys

    def missing(self, keys: Sequence[str]) -> list[str]:
        """Keys without stored features, each once, in first-seen order."""
        return list(dict.fromkeys(k for k in keys if k not in self._index))

    def add(self, keys: list[str], feats: torch.Tensor, model: FusionClassifier, modality: str) -> None:
        """Store a new shard (rows of `feats` belong to `keys`); FeatureCacheError if it cannot be written."""
        shard = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not (self.directory / "encoder.json").exists():
                encoder = model.image_encoder if modality == "image" else model.text_encoder
                about = {
                    "modality": modality,
                    "encoder": encoder.identity if encoder else None,
                    "format": FORMAT,
                }
                write_atomic(self.directory / "encoder.json", lambda p: p.write_text(json.dumps(about)))
            write_atomic(
                self.directory / f"{shard}.safetensors",
                lambda p: save_file({"features": feats.contiguous()}, str(p)),
            )
            # Written last: a shard is visible to readers only once its tensor file is complete.
            write_atomic(self.directory / f"{shard}.json", lambda p: p.write_text(json.dumps({"keys": keys})))
        except (OSError, SafetensorError) as exc:  # save_file reports a full disk as a SafetensorError
            raise FeatureCacheError(f"could not write the feature cache: {exc}") from exc
        self._index.update({key: (shard, row) for row, key in enumerate(keys)})

    def gather(self, keys: Sequence[str]) -> torch.Tensor:
        """Features [len(keys), D] in the order of `keys`."""
        shards = {self._index[k][0] for k in keys}
        loaded = {s: load_file(str(self.directory / f"{s}.safetensors"))["features"] for s in shards}
        return torch.stack([loaded[shard][row] for shard, row in (self._index[k] for k in keys)])


def _model_device(model: FusionClassifier) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _encode_images(
    model: FusionClassifier,
    dataset: Dataset,
    rows: list[int],
    batch_size: int,
    num_workers: int,
    advance: Callable[[int], None],
) -> torch.Tensor:
    device = _model_device(model)
    paths = [dataset.samples[i].image for i in rows]
    batches = index_batches(len(paths), batch_size)
    loader = image_batches(
        paths, model.config, batches, train=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    out = []
    for pixels in loader:
        pixels = pixels.to(device, non_blocking=True)
        if device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out.append(model.encode_image(pixels).float().cpu())
        advance(len(pixels))
    return torch.cat(out)


@torch.inference_mode()
def _encode_texts(
    model: FusionClassifier,
    dataset: Dataset,
    rows: list[int],
    batch_size: int,
    num_workers: int,
    advance: Callable[[int], None],
) -> torch.Tensor:
    device = _model_device(model)
    out = []
    for batch in index_batches(len(rows), batch_size):
        inputs = model.tokenize([dataset.samples[rows[i]].text for i in batch])
        with autocast(device):
            out.append(model.encode_text({k: v.to(device) for k, v in inputs.items()}).float().cpu())
        advance(len(batch))
    return torch.cat(out)
