"""Tests for model.predictor.Predictor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from fusion_testkit.factories import make_jpeg, make_png, png_header_only, save_tiny_checkpoint
from model.image_tags import tag_text
from model.images import ImageDecodeError, load_image
from model.predictor import Predictor

JPEG = make_jpeg((220, 60, 20), (48, 40))
PNG = make_png((20, 60, 220))


@pytest.fixture
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


def test_from_checkpoint_exposes_version_labels_and_config(
    predictor: Predictor, tiny_checkpoint: Path
) -> None:
    assert predictor.version == tiny_checkpoint.name
    assert predictor.labels == ("negative", "positive")
    assert predictor.config.image_size == 32
    assert predictor.device == torch.device("cpu")
    assert predictor.meta["dataset_fingerprint"] == "tiny-test-fingerprint"


def test_probabilities_sum_to_one_and_label_is_the_most_likely(predictor: Predictor) -> None:
    for pred in predictor.predict_batch([JPEG, PNG], ["what a day", "awful"]):
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert pred.label == max(pred.probabilities, key=pred.probabilities.__getitem__)
        assert pred.modalities_used == ["image", "text"]


def test_predictions_match_the_model_forward(predictor: Predictor) -> None:
    pixels = predictor.preprocess_image(JPEG).unsqueeze(0)
    with torch.no_grad():
        logits = predictor.model(
            pixels, predictor.model.tokenize(["nice"]), torch.tensor([True]), torch.tensor([True])
        )
    expected = torch.softmax(logits.logits, dim=-1)[0].tolist()
    got = predictor.predict_batch([JPEG], ["nice"])[0].probabilities
    assert list(got.values()) == pytest.approx(expected, abs=1e-6)


def test_a_batch_gives_the_same_results_as_single_items(predictor: Predictor) -> None:
    images = [JPEG, None, PNG]
    texts = ["sunny", "rainy", None]
    batched = predictor.predict_batch(images, texts)
    for i, pred in enumerate(batched):
        alone = predictor.predict_batch([images[i]], [texts[i]])[0]
        assert list(pred.probabilities.values()) == pytest.approx(
            list(alone.probabilities.values()), abs=1e-6
        )


def test_image_inputs_may_be_bytes_pil_or_tensor(predictor: Predictor) -> None:
    as_bytes, as_pil, as_tensor = predictor.predict_batch(
        [PNG, load_image(PNG), predictor.preprocess_image(PNG)], ["x", "x", "x"]
    )
    assert as_bytes.probabilities == pytest.approx(as_pil.probabilities, abs=1e-6)
    assert as_bytes.probabilities == pytest.approx(as_tensor.probabilities, abs=1e-6)


def test_missing_modalities_are_reported(predictor: Predictor) -> None:
    image_only, text_only = predictor.predict_batch([JPEG, None], ["  ", "hello"])
    assert image_only.modalities_used == ["image"]
    assert text_only.modalities_used == ["text"]


def test_an_item_with_neither_modality_is_rejected(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="item 1: needs an image or a text"):
        predictor.predict_batch([JPEG, None], ["a", None])


def test_mismatched_lengths_are_rejected(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="2 images but 1 texts"):
        predictor.predict_batch([JPEG, PNG], ["a"])


def test_model_without_modality_dropout_needs_both_inputs(tmp_path: Path) -> None:
    strict = Predictor.from_checkpoint(
        save_tiny_checkpoint(tmp_path / "v", modality_dropout=0.0), device="cpu"
    )
    with pytest.raises(ValueError, match=r"item 0: .* needs both inputs"):
        strict.predict_batch([JPEG], [None])


def test_text_only_model_rejects_an_image_only_item(tmp_path: Path) -> None:
    text_model = Predictor.from_checkpoint(
        save_tiny_checkpoint(tmp_path / "v", image_encoder="none"), device="cpu"
    )
    assert text_model.predict_batch([JPEG], ["hi"])[0].modalities_used == ["text"]
    with pytest.raises(ValueError, match="item 0: needs a text"):
        text_model.predict_batch([JPEG], [None])


def test_explain_adds_unimodal_probabilities_and_gate(predictor: Predictor) -> None:
    both, text_only = predictor.predict_batch([JPEG, None], ["great", "great"], explain=True)
    assert both.image_only is not None and both.text_only is not None
    assert sum(both.image_only.values()) == pytest.approx(1.0, abs=1e-6)
    assert both.gate is not None and sum(both.gate.values()) == pytest.approx(1.0, abs=1e-6)
    assert text_only.image_only is None
    assert text_only.text_only == pytest.approx(both.text_only, abs=1e-6)


def test_without_explain_the_extra_fields_are_empty(predictor: Predictor) -> None:
    pred = predictor.predict_batch([JPEG], ["great"])[0]
    assert (pred.image_only, pred.text_only, pred.gate) == (None, None, None)


def test_preprocess_image_rejects_bad_bytes_and_bombs(predictor: Predictor) -> None:
    with pytest.raises(ImageDecodeError):
        predictor.preprocess_image(b"not an image")
    with pytest.raises(ImageDecodeError) as err:
        predictor.preprocess_image(png_header_only(50_000, 50_000))
    assert err.value.reason == "too_many_pixels"


def test_preprocess_image_respects_max_pixels(tiny_checkpoint: Path) -> None:
    small = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", max_pixels=100)
    with pytest.raises(ImageDecodeError) as err:
        small.preprocess_image(JPEG)
    assert err.value.reason == "too_many_pixels"


def test_preprocess_image_is_thread_safe(predictor: Predictor) -> None:
    inputs = [JPEG, PNG] * 16
    expected = [predictor.preprocess_image(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(predictor.preprocess_image, inputs))
    assert all(torch.equal(a, b) for a, b in zip(results, expected, strict=True))
    assert expected[0].shape == (3, 32, 32)


@pytest.mark.parametrize("overrides", [{}, {"image_encoder": "none"}, {"text_encoder": "none"}])
def test_warmup_runs_for_every_kind_of_model(tmp_path: Path, overrides: dict[str, Any]) -> None:
    Predictor.from_checkpoint(save_tiny_checkpoint(tmp_path / "v", **overrides), device="cpu").warmup()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")
def test_cuda_predictions_match_the_cpu_ones(predictor: Predictor, tiny_checkpoint: Path) -> None:
    on_gpu = Predictor.from_checkpoint(tiny_checkpoint, device="cuda")
    images, texts = [JPEG, PNG, None], ["what a day", "awful", "text only"]
    for cpu, gpu in zip(
        predictor.predict_batch(images, texts), on_gpu.predict_batch(images, texts), strict=True
    ):
        assert gpu.modalities_used == cpu.modalities_used
        for label, p in cpu.probabilities.items():
            assert gpu.probabilities[label] == pytest.approx(p, abs=0.02)  # bf16 autocast


def test_with_image_tags_the_text_is_read_with_its_photos_tags(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(
        tmp_path / "tags-v1", image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=3
    )
    predictor = Predictor.from_checkpoint(path, device="cpu")
    model = predictor.model
    assert model.image_tagger is not None
    with torch.no_grad():
        image = model.encode_image(predictor.preprocess_image(JPEG).unsqueeze(0))
        tags = model.image_tagger.tags(image)[0]
        tagged = model.encode_text(model.tokenize([tag_text("sunny", tags)]))
        plain = model.encode_text(model.tokenize(["sunny"]))
        present = torch.tensor([True])
        fused = torch.softmax(model.head(image, tagged, present, present).logits, dim=-1)[0].tolist()
        text_alone = torch.softmax(model.head(None, plain, ~present, present).logits, dim=-1)[0].tolist()
        misread = torch.softmax(model.head(None, tagged, ~present, present).logits, dim=-1)[0].tolist()

    pred, text_item = predictor.predict_batch([JPEG, None], ["sunny", "sunny"], explain=True)

    assert len(tags) == 3 and max(abs(a - b) for a, b in zip(misread, text_alone, strict=True)) > 1e-4
    assert list(pred.probabilities.values()) == pytest.approx(fused, abs=1e-6)
    # "Text alone" reads the text without the photo's tags, and so does an item without a photo.
    assert pred.text_only is not None and list(pred.text_only.values()) == pytest.approx(text_alone, abs=1e-6)
    assert list(text_item.probabilities.values()) == pytest.approx(text_alone, abs=1e-6)
