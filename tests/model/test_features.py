"""Tests for model.features: the frozen-feature cache encodes each sample once, across runs and subsets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fusion_testkit.factories import build_tiny_model, tiny_model_config
from model.datasets import Dataset
from model.features import FeatureCache, frozen_modalities
from model.fusion import FusionClassifier
from model.images import ImageTransform, load_image

BOTH = ("image", "text")


class EncoderCalls:
    """Counts how many samples go through each encoder of a model."""

    def __init__(self, model: FusionClassifier) -> None:
        self.counts = {"image": 0, "text": 0}
        for name, encoder in (("image", model.image_encoder), ("text", model.text_encoder)):
            assert encoder is not None
            encoder.register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[[torch.nn.Module, tuple, torch.Tensor], None]:
        def count(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.counts[name] += output.shape[0]

        return count


@pytest.fixture
def small_set(demo_train: Dataset) -> Dataset:
    return demo_train.subset(range(20))


def test_second_run_skips_encoding(tmp_path: Path, small_set: Dataset) -> None:
    model = build_tiny_model()
    FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=BOTH)
    calls, progress = EncoderCalls(model), []
    again = FeatureCache(tmp_path).get_or_compute(
        model, small_set, lambda done, total: progress.append(done), modalities=BOTH
    )
    assert calls.counts == {"image": 0, "text": 0}
    assert progress == []
    assert again.image is not None and again.image.shape == (20, model.image_encoder.out_dim)  # type: ignore[union-attr]


def test_first_run_reports_progress_up_to_the_total(tmp_path: Path, small_set: Dataset) -> None:
    progress: list[tuple[int, int]] = []
    FeatureCache(tmp_path).get_or_compute(
        build_tiny_model(), small_set, lambda d, t: progress.append((d, t)), modalities=BOTH, batch_size=8
    )
    unique = len({s.digest for s in small_set}) + len({s.text for s in small_set})  # repeated captions occur
    assert progress[0] == (0, unique)
    assert progress[-1] == (unique, unique)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_cached_features_equal_direct_encoding_in_sample_order(tmp_path: Path, small_set: Dataset) -> None:
    model = build_tiny_model()
    cached = FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=BOTH)
    transform = ImageTransform(model.config, train=False)
    pixels = torch.stack(
        [transform(load_image(s.image, draft_size=model.config.image_size)) for s in small_set]
    )
    with torch.no_grad():
        images = model.encode_image(pixels)
        texts = model.encode_text(model.tokenize([s.text for s in small_set]))
    assert cached.image is not None and cached.text is not None
    torch.testing.assert_close(cached.image, images, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.text, texts, rtol=1e-4, atol=1e-5)


def test_subsets_and_overlapping_datasets_encode_only_new_samples(
    tmp_path: Path, demo_train: Dataset
) -> None:
    model = build_tiny_model()
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(model, demo_train.subset(range(10)), modalities=BOTH)
    calls = EncoderCalls(model)
    cache.get_or_compute(model, demo_train.subset([3, 1]), modalities=BOTH)
    assert calls.counts == {"image": 0, "text": 0}
    cache.get_or_compute(model, demo_train.subset(range(12)), modalities=BOTH)
    assert calls.counts["image"] == 2


def test_repeated_images_are_encoded_once(tmp_path: Path, small_set: Dataset) -> None:
    model = build_tiny_model()
    calls = EncoderCalls(model)
    doubled = small_set.subset(list(range(10)) * 2)
    features = FeatureCache(tmp_path).get_or_compute(model, doubled, modalities=("image",))
    assert calls.counts["image"] == 10
    assert features.image is not None and torch.equal(features.image[:10], features.image[10:])


def test_other_weights_or_preprocessing_get_their_own_entries(tmp_path: Path, small_set: Dataset) -> None:
    cache = FeatureCache(tmp_path)
    cache.get_or_compute(build_tiny_model(), small_set, modalities=("image",))
    torch.manual_seed(123)
    for model in (build_tiny_model(), build_tiny_model(image_size=24)):
        calls = EncoderCalls(model)
        cache.get_or_compute(model, small_set, modalities=("image",))
        assert calls.counts["image"] == 20


def test_half_written_shards_are_ignored(tmp_path: Path, small_set: Dataset) -> None:
    model = build_tiny_model()
    FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=("image",))
    for index in tmp_path.glob("image-*/*.json"):
        if index.name != "encoder.json":
            index.unlink()  # as if the writer died between the tensor file and its index
    calls = EncoderCalls(model)
    FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=("image",))
    assert calls.counts["image"] == 20
    assert not list(tmp_path.rglob("*.tmp"))


def _wrong_width(shard: Path) -> None:
    rows = load_file(str(shard))["features"].shape[0]
    save_file({"features": torch.zeros(rows, 3)}, str(shard))


def _one_row_short(shard: Path) -> None:
    save_file({"features": load_file(str(shard))["features"][1:].contiguous()}, str(shard))


def _half_the_bytes(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _key_list_not_json(shard: Path) -> None:
    shard.with_suffix(".json").write_text('{"keys": ["ab', encoding="utf-8")


UNUSABLE_SHARDS = {
    "wrong-width": _wrong_width,
    "one-row-short": _one_row_short,
    "half-the-bytes": _half_the_bytes,
    "key-list-not-json": _key_list_not_json,
}


@pytest.mark.parametrize("corrupt", UNUSABLE_SHARDS.values(), ids=UNUSABLE_SHARDS.keys())
def test_an_unusable_shard_is_encoded_again_and_replaced(
    tmp_path: Path, small_set: Dataset, corrupt: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    model = build_tiny_model()
    expected = FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=("image",)).image
    (shard,) = tmp_path.glob("image-*/*.safetensors")
    corrupt(shard)
    calls = EncoderCalls(model)

    again = FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=("image",)).image

    assert calls.counts["image"] == 20
    assert again is not None and expected is not None and torch.equal(again, expected)
    assert any(str(shard.with_suffix(".json")) in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("image-*/*.safetensors")) == [shard]  # the new shard replaced it
    calls.counts["image"] = 0
    FeatureCache(tmp_path).get_or_compute(model, small_set, modalities=("image",))
    assert calls.counts["image"] == 0


def test_only_frozen_pretrained_encoders_are_cacheable() -> None:
    pretrained = tiny_model_config(image_encoder="efficientnet_lite0", text_encoder="minilm", pretrained=True)
    assert frozen_modalities(FusionClassifier.build(pretrained, load_weights=False)) == BOTH
    assert frozen_modalities(build_tiny_model()) == ()
