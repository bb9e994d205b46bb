"""Tests for model.checkpoint: safe round trips and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fusion_testkit.factories import (
    build_tiny_model,
    save_tiny_checkpoint,
    tiny_model_config,
    tiny_vocabulary,
)
from model import checkpoint as ckpt
from model.checkpoint import (
    TAG_NAMES_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from model.config import TrainConfig
from model.encoders import efficientnet_lite
from model.fusion import FusionClassifier
from model.image_tags import imagenet_categories


def _outputs(model: FusionClassifier) -> torch.Tensor:
    torch.manual_seed(0)
    pixels = torch.randn(3, 3, 32, 32)
    inputs = model.tokenize(["lovely day", "worst traffic", ""])
    present = torch.tensor([True, True, False])
    with torch.no_grad():
        return model(pixels, inputs, present, torch.ones(3, dtype=torch.bool)).logits


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = build_tiny_model(fusion="concat", text_encoder="lstm")
    save_checkpoint(tmp_path / "v1", model, metrics={"accuracy": 0.9}, dataset_fingerprint="abc")
    loaded, _ = load_checkpoint(tmp_path / "v1")
    assert not loaded.training
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_an_ensemble_round_trips_with_every_member(tmp_path: Path) -> None:
    model = build_tiny_model(members=3)
    save_checkpoint(tmp_path / "v1", model, metrics={}, dataset_fingerprint="abc")
    loaded, _ = load_checkpoint(tmp_path / "v1")
    assert len(loaded.heads) == 3
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_a_checkpoint_from_before_ensemble_members_loads(tmp_path: Path) -> None:
    model = build_tiny_model()
    saved = save_checkpoint(tmp_path / "v1", model, metrics={}, dataset_fingerprint="abc")
    # The layout of checkpoints written before `members`: the one head's tensors at the top level.
    tensors = {k.removeprefix("heads.0."): v for k, v in load_file(str(saved / "model.safetensors")).items()}
    assert "classifier.0.weight" in tensors
    save_file(tensors, str(saved / "model.safetensors"))
    loaded, _ = load_checkpoint(saved)
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_a_checkpoint_from_before_image_tags_loads_reading_its_texts_untagged(tmp_path: Path) -> None:
    model = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=0)
    saved = save_checkpoint(tmp_path / "v1", model, metrics={}, dataset_fingerprint="abc")
    meta = json.loads((saved / "config.json").read_text())
    del meta["model_config"]["text_image_tags"]  # config.json as written before the field existed
    (saved / "config.json").write_text(json.dumps(meta))

    loaded, _ = load_checkpoint(saved)

    assert loaded.config.text_image_tags == 0 and loaded.image_tagger is None
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_a_model_with_image_tags_records_their_class_names(tmp_path: Path) -> None:
    tagged = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=3)
    saved = save_checkpoint(tmp_path / "tags", tagged, metrics={}, dataset_fingerprint="abc")
    plain = save_checkpoint(tmp_path / "plain", build_tiny_model(), metrics={}, dataset_fingerprint="abc")

    assert read_checkpoint_meta(saved)[TAG_NAMES_KEY] == list(imagenet_categories())
    assert TAG_NAMES_KEY not in read_checkpoint_meta(plain)
    loaded, _ = load_checkpoint(saved)
    assert loaded.image_tagger is not None and loaded.image_tagger.names == imagenet_categories()


def test_metadata_records_everything_needed(tmp_path: Path) -> None:
    model = build_tiny_model()
    save_checkpoint(
        tmp_path / "v1",
        model,
        metrics={"fusion": {"accuracy": 0.75}},
        dataset_fingerprint="fp-123",
        train_config=TrainConfig(epochs=2),
        extra={"note": "hi"},
    )
    meta = read_checkpoint_meta(tmp_path / "v1")
    assert meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["model_config"] == model.config.to_dict()
    assert meta["labels"] == ["negative", "positive"]
    assert meta["vocabulary"] == tiny_vocabulary().to_dict()
    assert meta["encoders"] == {"image": model.image_encoder.identity, "text": model.text_encoder.identity}  # type: ignore[union-attr]
    assert meta["metrics"] == {"fusion": {"accuracy": 0.75}}
    assert meta["dataset_fingerprint"] == "fp-123"
    assert meta["train_config"] == TrainConfig(epochs=2).to_dict()
    assert meta["extra"] == {"note": "hi"}
    assert meta["created_at"]


def test_save_leaves_only_the_checkpoint_directory(tmp_path: Path) -> None:
    save_tiny_checkpoint(tmp_path / "v1")
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["config.json", "model.safetensors"]


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        save_tiny_checkpoint(tmp_path / "v1")


def test_metrics_that_are_not_json_are_refused_without_writing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not plain JSON"):
        save_checkpoint(tmp_path / "v1", build_tiny_model(), metrics={"x": object()}, dataset_fingerprint="f")
    assert list(tmp_path.iterdir()) == []


def test_loading_does_not_read_pretrained_package_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_model_config(image_encoder="efficientnet_lite0", pretrained=True)
    model = FusionClassifier.build(config, tiny_vocabulary(config), load_weights=False)
    save_checkpoint(tmp_path / "v1", model, metrics={}, dataset_fingerprint="f")

    def no_reading(name: str) -> str:
        raise AssertionError(f"package weights of {name} were read")

    monkeypatch.setattr(efficientnet_lite, "weights_path", no_reading)
    loaded, meta = load_checkpoint(tmp_path / "v1")
    assert loaded.image_encoder is not None and loaded.image_encoder.pretrained
    assert loaded.image_encoder.identity == meta["encoders"]["image"]


def _rewrite_meta(path: Path, **changes: object) -> None:
    meta = json.loads((path / "config.json").read_text())
    meta.update(changes)
    (path / "config.json").write_text(json.dumps(meta))


def _rewrite_tensors(path: Path, change: str) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    if change == "drop":
        del tensors["heads.0.classifier.0.weight"]
    elif change == "add":
        tensors["extra.weight"] = torch.zeros(2)
    else:
        tensors["heads.0.classifier.0.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(path / "model.safetensors"))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_tiny_checkpoint(tmp_path / "v1")


def test_unknown_format_version_is_refused(saved: Path) -> None:
    _rewrite_meta(saved, format_version=99)
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("change", "problem"), [("drop", "missing"), ("add", "unexpected"), ("shape", "mis-shaped")]
)
def test_tensor_mismatches_are_refused_by_name(saved: Path, change: str, problem: str) -> None:
    _rewrite_tensors(saved, change)
    with pytest.raises(CheckpointError, match=problem):
        load_checkpoint(saved)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_files_are_refused(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name}: missing"):
        load_checkpoint(saved)


def test_corrupt_json_is_refused(saved: Path) -> None:
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        read_checkpoint_meta(saved)


def test_corrupt_safetensors_is_refused(saved: Path) -> None:
    (saved / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(saved)


def test_pickled_weights_are_never_loaded(saved: Path) -> None:
    torch.save({"classifier.0.weight": torch.zeros(1)}, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(saved)


def test_invalid_model_config_is_refused(saved: Path) -> None:
    _rewrite_meta(saved, model_config={"fusion": "magic"})
    with pytest.raises(CheckpointError, match="fusion: "):
        load_checkpoint(saved)


def test_missing_meta_field_is_refused(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    del meta["vocabulary"]
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="vocabulary"):
        read_checkpoint_meta(saved)
