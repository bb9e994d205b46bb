"""Tests for model.export: the ONNX graph of a checkpoint, its metadata, and the export CLI."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from fusion_testkit.factories import save_tiny_checkpoint
from model.checkpoint import read_checkpoint_meta, save_checkpoint
from model.cli import main
from model.config import ModelConfig
from model.export import INT8_FILE, ONNX_FILE, OPSET, ExportError, export_for_serving, export_onnx
from model.fusion import FusionClassifier


def test_export_writes_a_checked_graph_and_describes_it_in_config_json(tiny_checkpoint: Path) -> None:
    entry = export_onnx(tiny_checkpoint)
    graph = onnx.load(str(tiny_checkpoint / ONNX_FILE))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == OPSET
    assert [o.name for o in graph.graph.output] == ["probabilities", "image_only", "text_only", "gate"]
    # The bag of words reads no attention mask, so the graph has no such input.
    assert [i.name for i in graph.graph.input] == ["pixels", "input_ids", "image_present", "text_present"]
    meta = read_checkpoint_meta(tiny_checkpoint)
    assert meta["onnx"] == entry
    assert entry["file"] == ONNX_FILE
    assert entry["inputs"]["pixels"]["shape"] == ["image_rows", 3, 32, 32]
    assert entry["outputs"]["probabilities"]["shape"] == ["batch", 2]
    assert "int8_file" not in entry
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == [
        "config.json",
        "model.onnx",
        "model.safetensors",
    ]


def test_graph_axes_are_dynamic(tiny_checkpoint: Path) -> None:
    export_onnx(tiny_checkpoint)
    graph = onnx.load(str(tiny_checkpoint / ONNX_FILE))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    assert dims["pixels"] == ["image_rows", 3, 32, 32]
    assert dims["input_ids"] == ["text_rows", "tokens"]
    assert dims["image_present"] == ["batch"]


def test_quantize_int8_writes_a_second_graph(tiny_checkpoint: Path) -> None:
    entry = export_onnx(tiny_checkpoint, quantize="int8")
    assert entry["int8_file"] == INT8_FILE
    onnx.checker.check_model(str(tiny_checkpoint / INT8_FILE))
    ops = {node.op_type for node in onnx.load(str(tiny_checkpoint / INT8_FILE)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}


def test_unknown_quantize_mode_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ExportError, match="quantize: must be one of int8"):
        export_onnx(tiny_checkpoint, quantize="int4")


def test_a_failed_export_leaves_no_partial_file_and_records_why(tiny_checkpoint: Path) -> None:
    (tiny_checkpoint / ONNX_FILE).mkdir()  # the rename onto the graph's path fails: a real write error
    result = export_for_serving(tiny_checkpoint)
    assert result["exported"] is False
    assert "ONNX export failed" in result["error"] and "IsADirectoryError" in result["error"]
    assert not [p for p in tiny_checkpoint.iterdir() if p.name.startswith(".")]  # no temporary file left
    meta = read_checkpoint_meta(tiny_checkpoint)
    assert meta["onnx"]["file"] is None
    assert meta["onnx"]["error"] == result["error"]


def test_lstm_text_encoder_exports_and_matches_torch_on_other_shapes(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "v", text_encoder="lstm")
    assert export_onnx(path)["file"] == ONNX_FILE  # the export checks parity on a batch of 3 itself


def test_image_only_model_has_no_text_inputs(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "v", text_encoder="none", fusion="concat")
    entry = export_onnx(path)
    assert list(entry["inputs"]) == ["pixels", "image_present", "text_present"]
    assert list(entry["outputs"]) == ["probabilities", "image_only", "text_only"]


def test_cli_export_prints_the_entry(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--quantize", "int8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["onnx"]["file"] == ONNX_FILE
    assert printed["onnx"]["int8_file"] == INT8_FILE
    assert (tiny_checkpoint / INT8_FILE).is_file()


def test_cli_export_of_a_missing_checkpoint_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config.json: missing" in err
    assert err.count("\n") == 1


@pytest.fixture(scope="module")
def production_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default architecture (EfficientNet-Lite0 + MiniLM, sum fusion) with its pretrained encoders."""
    model = FusionClassifier.build(ModelConfig(labels=("negative", "neutral", "positive")))
    path = tmp_path_factory.mktemp("production") / "v"
    return save_checkpoint(path, model.eval(), metrics={}, dataset_fingerprint="production-test")


@pytest.mark.slow  # exporting the 100 MB graph takes ~20 s on two busy cores
def test_production_graph_matches_torch(production_checkpoint: Path) -> None:
    from model.onnx_predictor import OnnxPredictor
    from model.predictor import Predictor
    from tests.model.test_onnx_predictor import assert_same_predictions, real_inputs

    export_onnx(production_checkpoint)
    images, texts = real_inputs(size=(300, 240))
    torch_preds = Predictor.from_checkpoint(production_checkpoint, device="cpu").predict_batch(
        images, texts, explain=True
    )
    onnx_preds = OnnxPredictor.from_checkpoint(production_checkpoint).predict_batch(
        images, texts, explain=True
    )
    assert_same_predictions(torch_preds, onnx_preds)
