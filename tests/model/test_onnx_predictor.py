"""Tests for model.onnx_predictor.OnnxPredictor: parity with the torch predictor on real encoded images."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fusion_testkit.factories import make_jpeg, make_png, save_tiny_checkpoint
from model.checkpoint import TAG_NAMES_KEY, CheckpointError, read_checkpoint_meta
from model.export import IMAGE_FILE, ONNX_FILE, export_onnx
from model.image_tags import imagenet_categories
from model.images import ImageDecodeError
from model.onnx_predictor import GraphError, OnnxPredictor
from model.predictor import Prediction, Predictor

TOLERANCE = 1e-4


def real_inputs(size: tuple[int, int] = (48, 40)) -> tuple[list[bytes | None], list[str | None]]:
    """Real JPEG and PNG bytes and tweet-like texts, with one item lacking each modality."""
    images: list[bytes | None] = [
        make_jpeg((220, 60, 20), size),
        make_png((20, 60, 220), size),
        None,
        make_jpeg((10, 200, 90), (size[1], size[0]), exif_orientation=6),
        make_png((250, 250, 10), size, mode="RGBA"),
    ]
    texts: list[str | None] = [
        "What a lovely sunny day #happy",
        None,
        "RT @friend: this is the worst traffic ever http://t.co/xyz",
        "I love this so much!",
        "terrible service, never again",
    ]
    return images, texts


def assert_same_predictions(expected: list[Prediction], got: list[Prediction]) -> None:
    """Same labels and modalities; every probability (fused, image-only, text-only, gate) within 1e-4."""
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        assert have.label == want.label
        assert have.modalities_used == want.modalities_used
        for field in ("probabilities", "image_only", "text_only", "gate"):
            a, b = getattr(want, field), getattr(have, field)
            assert (a is None) == (b is None), field
            if a is not None:
                assert list(a) == list(b)
                assert max(abs(a[k] - b[k]) for k in a) <= TOLERANCE, field


@pytest.fixture
def exported(tiny_checkpoint: Path) -> Path:
    export_onnx(tiny_checkpoint, quantize="int8")
    return tiny_checkpoint


def test_onnx_matches_torch_with_explanations_and_missing_modalities(exported: Path) -> None:
    images, texts = real_inputs()
    torch_preds = Predictor.from_checkpoint(exported, device="cpu").predict_batch(images, texts, explain=True)
    onnx_preds = OnnxPredictor.from_checkpoint(exported).predict_batch(images, texts, explain=True)
    assert_same_predictions(torch_preds, onnx_preds)
    assert onnx_preds[1].modalities_used == ["image"] and onnx_preds[1].text_only is None
    assert onnx_preds[2].modalities_used == ["text"] and onnx_preds[2].image_only is None
    assert onnx_preds[0].gate is not None


def test_a_batch_of_one_modality_only_matches_torch(exported: Path) -> None:
    images, texts = real_inputs()
    torch_predictor = Predictor.from_checkpoint(exported, device="cpu")
    onnx_predictor = OnnxPredictor.from_checkpoint(exported)
    for batch in ((images[:2], [None, None]), ([None, None], texts[2:4])):
        assert_same_predictions(torch_predictor.predict_batch(*batch), onnx_predictor.predict_batch(*batch))


def test_without_explain_only_probabilities_are_filled(exported: Path) -> None:
    images, texts = real_inputs()
    pred = OnnxPredictor.from_checkpoint(exported).predict_batch(images[:1], texts[:1])[0]
    assert pred.image_only is None and pred.text_only is None and pred.gate is None
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_int8_graph_serves_the_same_labels_set(exported: Path) -> None:
    images, texts = real_inputs()
    predictor = OnnxPredictor.from_checkpoint(exported, int8=True)
    assert predictor.runtime == "onnx-int8"
    for pred in predictor.predict_batch(images, texts):
        assert set(pred.probabilities) == {"negative", "positive"}
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_are_refused_as_on_torch(exported: Path) -> None:
    predictor = OnnxPredictor.from_checkpoint(exported)
    with pytest.raises(ImageDecodeError):
        predictor.predict_batch([b"not an image"], ["text"])
    with pytest.raises(ValueError, match="item 0: needs an image or a text"):
        predictor.predict_batch([None], ["  "])


def test_a_checkpoint_without_a_graph_is_a_graph_error(tiny_checkpoint: Path) -> None:
    with pytest.raises(GraphError, match="records no ONNX graph"):
        OnnxPredictor.from_checkpoint(tiny_checkpoint)


def test_a_truncated_graph_is_a_graph_error(exported: Path) -> None:
    graph = exported / ONNX_FILE
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(GraphError, match="not a loadable ONNX graph"):
        OnnxPredictor.from_checkpoint(exported)


def test_a_model_that_needs_both_inputs_says_so(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "v", modality_dropout=0.0)
    export_onnx(path)
    assert read_checkpoint_meta(path)["onnx"]["file"] == ONNX_FILE
    with pytest.raises(ValueError, match="needs both inputs"):
        OnnxPredictor.from_checkpoint(path).predict_batch([None], ["text"])


class _HeldSession:
    """Wraps an ORT session; ``run`` waits until released, so a test can hold one run in flight."""

    def __init__(self, session: object) -> None:
        self._session = session
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, *args: object) -> object:
        self.entered.set()
        assert self.release.wait(30), "the held run was never released"
        return self._session.run(*args)  # type: ignore[attr-defined]


def test_a_run_that_overlaps_another_uses_the_second_session(exported: Path) -> None:
    images, texts = real_inputs()
    predictor = OnnxPredictor.from_checkpoint(exported, threads=2)
    alone = predictor.predict_batch(images, texts, explain=True)
    assert predictor.overlap_threads is None
    assert predictor.open_overlap_session(1) is True
    assert predictor.overlap_threads == 1
    held = _HeldSession(predictor.session)
    predictor.session = held
    first: list[list[Prediction]] = []
    worker = threading.Thread(
        target=lambda: first.append(predictor.predict_batch(images, texts, explain=True))
    )
    worker.start()
    try:
        assert held.entered.wait(30)
        # The first session is held mid-run: this call can only finish on the second one.
        assert_same_predictions(alone, predictor.predict_batch(images, texts, explain=True))
    finally:
        held.release.set()
        worker.join(30)
    assert_same_predictions(alone, first[0])
    held.entered.clear()
    held.release.set()
    predictor.predict_batch(images[:1], texts[:1])
    assert held.entered.is_set()  # nothing in flight: a lone run is back on the first session


def test_no_second_session_where_it_would_not_differ(exported: Path) -> None:
    assert OnnxPredictor.from_checkpoint(exported, threads=1).open_overlap_session(1) is False
    predictor = OnnxPredictor.from_checkpoint(exported, threads=2)
    assert predictor.open_overlap_session(2) is False
    assert predictor.overlap_threads is None


def test_a_second_session_that_cannot_open_leaves_the_first_serving(exported: Path) -> None:
    images, texts = real_inputs()
    predictor = OnnxPredictor.from_checkpoint(exported, threads=2)
    graph = exported / ONNX_FILE
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(GraphError, match="not a loadable ONNX graph"):
        predictor.open_overlap_session(1)
    assert predictor.overlap_threads is None
    assert len(predictor.predict_batch(images, texts)) == len(images)


@pytest.fixture
def tagged_exported(tmp_path: Path) -> Path:
    """A tiny checkpoint with image tags (EfficientNet-Lite0 and its ImageNet classifier), exported."""
    path = save_tiny_checkpoint(
        tmp_path / "tags-v1", image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=3
    )
    export_onnx(path, quantize="int8")
    return path


def test_a_model_with_image_tags_runs_its_image_graph_first_and_matches_torch(tagged_exported: Path) -> None:
    onnx_entry = read_checkpoint_meta(tagged_exported)["onnx"]
    assert onnx_entry["image_file"] == IMAGE_FILE and (tagged_exported / IMAGE_FILE).is_file()
    assert next(iter(onnx_entry["inputs"])) == "image_features"
    images, texts = real_inputs()
    torch_preds = Predictor.from_checkpoint(tagged_exported, device="cpu").predict_batch(
        images, texts, explain=True
    )
    predictor = OnnxPredictor.from_checkpoint(tagged_exported, threads=2)
    assert_same_predictions(torch_preds, predictor.predict_batch(images, texts, explain=True))
    assert_same_predictions(torch_preds[2:3], predictor.predict_batch(images[2:3], texts[2:3], explain=True))
    assert predictor.open_overlap_session(1) is True
    assert_same_predictions(torch_preds, predictor.predict_batch(images, texts, explain=True))
    int8 = OnnxPredictor.from_checkpoint(tagged_exported, int8=True).predict_batch(images, texts)
    assert [p.modalities_used for p in int8] == [p.modalities_used for p in torch_preds]


def test_a_graph_that_needs_image_features_without_its_image_graph_is_a_graph_error(
    tagged_exported: Path,
) -> None:
    (tagged_exported / IMAGE_FILE).unlink()
    with pytest.raises(GraphError, match="not a loadable ONNX graph"):
        OnnxPredictor.from_checkpoint(tagged_exported)


def _record_tag_names(path: Path, names: list[str] | None) -> None:
    """Rewrite the checkpoint's recorded tag names (None: as saved before they were recorded)."""
    meta = json.loads((path / "config.json").read_text())
    if names is None:
        del meta[TAG_NAMES_KEY]
    else:
        meta[TAG_NAMES_KEY] = names
    (path / "config.json").write_text(json.dumps(meta))


def _both_runtimes(path: Path) -> list[Predictor | OnnxPredictor]:
    return [Predictor.from_checkpoint(path, device="cpu"), OnnxPredictor.from_checkpoint(path, threads=2)]


def test_the_tags_use_the_class_names_the_checkpoint_records(tagged_exported: Path) -> None:
    assert read_checkpoint_meta(tagged_exported)[TAG_NAMES_KEY] == list(imagenet_categories())
    images, texts = real_inputs()
    recorded = Predictor.from_checkpoint(tagged_exported, device="cpu").predict_batch(images, texts)

    _record_tag_names(tagged_exported, ["worst"] * 1000)  # a word the tiny vocabulary knows
    for predictor in _both_runtimes(tagged_exported):
        renamed = predictor.predict_batch(images, texts)
        # Rows with an image and a text read other tags, so their probabilities move; the others do not.
        moved = [
            max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) > TOLERANCE
            for a, b in zip(recorded, renamed, strict=True)
        ]
        assert moved == [True, False, False, True, True]

    _record_tag_names(tagged_exported, None)  # saved before the names were recorded: torchvision's
    for predictor in _both_runtimes(tagged_exported):
        assert_same_predictions(recorded, predictor.predict_batch(images, texts))


@pytest.mark.parametrize("names", [["tench"] * 999, [""] * 1000, "tench"])
def test_recorded_tag_names_that_are_not_1000_names_are_refused(tagged_exported: Path, names: object) -> None:
    _record_tag_names(tagged_exported, names)  # type: ignore[arg-type]
    for load in (Predictor.from_checkpoint, OnnxPredictor.from_checkpoint):
        with pytest.raises(CheckpointError, match=f"{TAG_NAMES_KEY}: expected 1000 class names"):
            load(tagged_exported)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_serving_a_tagged_version_does_not_import_torchvision(tagged_exported: Path, runtime: str) -> None:
    # torchvision's import took about 1.4 s of a service's start-up; the names come from the checkpoint.
    load = {
        "torch": "Predictor.from_checkpoint(path, device='cpu')",
        "onnx": "OnnxPredictor.from_checkpoint(path)",
    }
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fusion_testkit.factories import make_jpeg\n"
        "from model.onnx_predictor import OnnxPredictor\n"
        "from model.predictor import Predictor\n"
        "path = Path(sys.argv[1])\n"
        f"predictor = {load[runtime]}\n"
        "predictor.warmup()\n"
        "[prediction] = predictor.predict_batch([make_jpeg((220, 60, 20), (48, 40))], ['I love this'])\n"
        "print(','.join(prediction.modalities_used), 'torchvision' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tagged_exported)], capture_output=True, text=True, check=True
    )
    # Both inputs were read (so the image was tagged), and torchvision was never imported.
    assert done.stdout.split() == ["image,text", "False"], done.stdout
