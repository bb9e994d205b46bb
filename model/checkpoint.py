"""Checkpoints: a directory holding ``model.safetensors`` (tensors) and ``config.json`` (plain data)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.atomic import fsync, remove_abandoned, temp_folder
from model.config import ModelConfig, TrainConfig
from model.fusion import FusionClassifier, upgrade_state_dict
from model.image_tags import IMAGENET_CLASSES, imagenet_categories
from model.text import Vocabulary

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "config.json"
TEMP_INFIX = ".tmp-"  # a save in progress is the folder `.<name>.tmp-<hex>` beside its final place
# config.json of a model with image tags: the class names its tag ids stand for (model.image_tags).
TAG_NAMES_KEY = "image_tag_names"


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read; the message names the problem."""


def save_checkpoint(
    path: str | Path,
    model: FusionClassifier,
    *,
    metrics: dict[str, Any],
    dataset_fingerprint: str,
    train_config: TrainConfig | dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to the new directory ``path`` atomically (temp sibling, fsync, rename).

    Refuses to overwrite an existing path.
    """
    path = Path(path)
    if path.exists():
        raise CheckpointError(f"{path}: already exists")
    meta = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "labels": list(model.labels),
        "vocabulary": model.vocab.to_dict() if model.vocab is not None else None,
        "encoders": {
            "image": model.image_encoder.identity if model.image_encoder is not None else None,
            "text": model.text_encoder.identity if model.text_encoder is not None else None,
        },
        "metrics": metrics,
        "dataset_fingerprint": dataset_fingerprint,
        "train_config": train_config.to_dict() if isinstance(train_config, TrainConfig) else train_config,
        "extra": extra or {},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if model.image_tagger is not None:
        meta[TAG_NAMES_KEY] = list(model.image_tagger.names or imagenet_categories())
    try:
        meta_text = json.dumps(meta, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{META_FILE}: metadata is not plain JSON ({exc})") from exc
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_folder(path.parent / f".{path.name}{TEMP_INFIX}{uuid.uuid4().hex}") as tmp:
        try:
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
            (tmp / META_FILE).write_text(meta_text, encoding="utf-8")
            for name in (WEIGHTS_FILE, META_FILE):
                fsync(tmp / name)
            fsync(tmp)
            if path.exists():  # appeared while we were writing; rename would replace an empty directory
                raise CheckpointError(f"{path}: already exists")
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    fsync(path.parent)
    return path


def remove_abandoned_saves(parent: str | Path) -> list[str]:
    """Remove the temporary folders that saves into `parent` left when their process died; their names."""
    return remove_abandoned(Path(parent), f".*{TEMP_INFIX}*")


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``, checked for format version and required fields."""
    meta_path = Path(path) / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{meta_path}: missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: unsupported format_version {version!r} (expected {FORMAT_VERSION})"
        )
    for key in ("model_config", "labels", "vocabulary"):
        if key not in meta:
            raise CheckpointError(f"{meta_path}: missing field {key!r}")
    return meta


def check_weights_file(path: str | Path) -> None:
    """Check from its header alone that the checkpoint's weights file is whole; CheckpointError otherwise.

    safetensors requires the header to cover the file exactly, so a truncated file fails; no tensor is read.
    """
    weights = Path(path) / WEIGHTS_FILE
    try:
        with safe_open(str(weights), "pt"):
            pass
    except FileNotFoundError as exc:
        raise CheckpointError(f"{weights}: missing") from exc
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors ({exc})") from exc


def _check_tensors(model: FusionClassifier, tensors: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    problems = []
    for kind, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{kind} tensors: {shown}")
    if problems:
        raise CheckpointError(f"{where}: " + "; ".join(problems))


def tag_names(meta: dict[str, Any], path: Path) -> tuple[str, ...] | None:
    """The tag class names the checkpoint at `path` records (None where it records none: a model without
    image tags, or one saved before they were recorded, whose tags are torchvision's ImageNet names)."""
    names = meta.get(TAG_NAMES_KEY)
    if names is None:
        return None
    if not (
        isinstance(names, list)
        and len(names) == IMAGENET_CLASSES
        and all(isinstance(name, str) and name for name in names)
    ):
        raise CheckpointError(f"{path / META_FILE}: {TAG_NAMES_KEY}: expected {IMAGENET_CLASSES} class names")
    return tuple(names)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[FusionClassifier, dict[str, Any]]:
    """Rebuild the model from a checkpoint (in eval mode on ``device``) and return it with its metadata."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    try:
        config = ModelConfig.from_stored(meta["model_config"])
        vocab = Vocabulary.from_dict(meta["vocabulary"]) if meta["vocabulary"] is not None else None
        model = FusionClassifier.build(config, vocab, load_weights=False)
    except ValueError as exc:
        raise CheckpointError(f"{path / META_FILE}: {exc}") from exc
    if list(config.labels) != meta["labels"]:
        raise CheckpointError(f"{path / META_FILE}: labels disagree with model_config.labels")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors ({exc})") from exc
    tensors = upgrade_state_dict(tensors)
    if model.knn is not None and "knn.keys" in tensors:
        model.knn.resize_for(*tensors["knn.keys"].shape)
    _check_tensors(model, tensors, weights)
    model.load_state_dict(tensors, strict=True)
    if model.image_tagger is not None:
        model.image_tagger.names = tag_names(meta, path)
    model.to(device)
    model.eval()
    return model, meta
