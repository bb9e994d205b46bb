"""ONNX export: a checkpoint's graphs (`model.onnx_graphs`) traced, checked and written beside it."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.atomic import write_atomic
from model.checkpoint import META_FILE, load_checkpoint, read_checkpoint_meta
from model.fusion import FusionClassifier
from model.onnx_graphs import (
    IMAGE_OUTPUTS,
    ImageGraph,
    InferenceGraph,
    describe_input,
    describe_output,
    dynamic_axes,
    example_inputs,
    graph_inputs,
    graph_outputs,
    trace_inputs,
)

log = logging.getLogger(__name__)

OPSET = 17
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# With image tags the text's input depends on the image's output, so the image encoder is a graph of its
# own: pixels -> image features and tag ids; the main graph then takes image features instead of pixels.
IMAGE_FILE = "model.image.onnx"
# Written into config.json under this key: what `model.onnx_predictor` needs to feed and read the graph.
META_KEY = "onnx"
EXPORT_FORMATS = ("onnx",)
QUANTIZE_MODES = ("int8",)


class ExportError(RuntimeError):
    """A graph could not be exported or checked; the message says which step failed."""


def _check_parity(model: FusionClassifier, graph: InferenceGraph, target: Path) -> None:
    """Run the graph on other shapes than the traced ones: it must give torch's outputs within 1e-4."""
    import onnxruntime as ort

    texts = ["a longer text than the one traced, to change the length", "two"]
    inputs = example_inputs(model, [True, False, True], [True, True, False], texts)
    with torch.no_grad():
        expected = graph(*inputs.values())
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    for name, want, got in zip(graph_outputs(model), expected, session.run(None, feeds), strict=True):
        diff = float((want - torch.from_numpy(got)).abs().max())
        if not diff <= 1e-4:
            raise ExportError(f"{name}: the graph differs from torch by {diff:.2g} on a batch of 3")


def export_problem(meta: dict[str, Any]) -> str | None:
    """Why the last export of this checkpoint failed (recorded in its config.json), or None."""
    return (meta.get(META_KEY) or {}).get("error")


def _write_meta(checkpoint_dir: Path, entry: dict[str, Any]) -> None:
    """Set ``entry`` as the ``onnx`` entry of config.json, atomically (temp + rename)."""
    meta = read_checkpoint_meta(checkpoint_dir)
    meta[META_KEY] = entry
    text = json.dumps(meta, indent=2, allow_nan=False)
    write_atomic(checkpoint_dir / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=True)


def _trace(
    graph: nn.Module,
    args: tuple[torch.Tensor, ...],
    target: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Trace ``graph`` on ``args`` into the ONNX file ``target``."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Python values taken from tensors (padding sizes, "any row present?") are meant to be constant
        # here; the parity checks run the graphs on other shapes to prove it.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            args,
            str(target),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the dynamo exporter needs onnxscript; see docs/PERFORMANCE.md
        )


def _export_graph(model: FusionClassifier, target: Path) -> list[str]:
    """Export and check the graph at ``target``; returns the names of its inputs."""
    import onnx

    graph = InferenceGraph(model).eval()
    _trace(
        graph,
        tuple(trace_inputs(model).values()),
        target,
        graph_inputs(model),
        graph_outputs(model),
        dynamic_axes(model),
    )
    onnx.checker.check_model(str(target), full_check=True)
    _check_parity(model, graph, target)
    # Inputs an encoder ignores (the bag of words reads no attention mask) are pruned by the exporter.
    return [i.name for i in onnx.load(str(target), load_external_data=False).graph.input]


def _export_image_graph(model: FusionClassifier, target: Path) -> None:
    """Export the image graph at ``target`` and check it against torch on another batch size."""
    import onnx
    import onnxruntime as ort

    graph = ImageGraph(model).eval()
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    _trace(
        graph,
        (torch.randn(2, 3, size, size, generator=generator),),
        target,
        ["pixels"],
        list(IMAGE_OUTPUTS),
        {name: {0: "image_rows"} for name in ("pixels", *IMAGE_OUTPUTS)},
    )
    onnx.checker.check_model(str(target), full_check=True)
    pixels = torch.randn(3, 3, size, size, generator=generator)
    with torch.inference_mode(False), torch.no_grad():
        features, tag_ids = graph(pixels)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got_features, got_ids = session.run(list(IMAGE_OUTPUTS), {"pixels": pixels.numpy()})
    diff = float((features - torch.from_numpy(got_features)).abs().max())
    if not diff <= 1e-4:
        raise ExportError(f"image_features: the image graph differs from torch by {diff:.2g} on a batch of 3")
    if not torch.equal(tag_ids, torch.from_numpy(got_ids)):
        raise ExportError("tag_ids: the image graph's tags differ from torch's on a batch of 3")


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Matrix products only (MiniLM, projections, head): EfficientNet's depthwise convolutions lose too much
    # accuracy as int8 (measured in docs/PERFORMANCE.md) and are a small share of the CPU time.
    # Per-channel scales with 7-bit weights (reduce_range: no saturation on CPUs without VNNI): 98.44 %
    # agreement with fp32 on MVSA dev, where per-tensor weights had 97.78 % on an earlier checkpoint
    # (docs/PERFORMANCE.md).
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        reduce_range=True,
    )


def export_onnx(checkpoint_dir: str | Path, *, quantize: str | None = None) -> dict[str, Any]:
    """Export the checkpoint's graph to ``model.onnx`` (and ``model.int8.onnx`` with ``quantize="int8"``).

    Files are written atomically beside the safetensors; ``config.json`` gains an ``onnx`` entry
    describing opset, files, inputs and outputs, which it returns. Raises ``ExportError``.
    """
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize: must be one of {', '.join(QUANTIZE_MODES)}; got {quantize!r}")
    path = Path(checkpoint_dir)
    model, _ = load_checkpoint(path)
    entry: dict[str, Any] = {
        "opset": OPSET,
        "torch": torch.__version__,
        "outputs": {name: describe_output(name, model) for name in graph_outputs(model)},
    }
    entry["file"] = None  # until the graph is written and checked
    try:
        inputs: list[str] = []
        write_atomic(path / ONNX_FILE, lambda tmp: inputs.extend(_export_graph(model, tmp)), durable=True)
        entry.update(file=ONNX_FILE, inputs={name: describe_input(name, model) for name in inputs})
        if model.image_tagger is not None:
            # One image graph for the fp32 and the int8 main graph: the depthwise convolutions stay fp32
            # anyway, and the tags must be the ones the model was trained with.
            write_atomic(path / IMAGE_FILE, lambda tmp: _export_image_graph(model, tmp), durable=True)
            entry["image_file"] = IMAGE_FILE
        if quantize == "int8":
            write_atomic(path / INT8_FILE, lambda tmp: _quantize(path / ONNX_FILE, tmp), durable=True)
            entry["int8_file"] = INT8_FILE
    except Exception as exc:  # torch.onnx, onnx.checker and the quantizer raise many kinds
        message = (
            f"{path.name}: ONNX export failed ({type(exc).__name__}: {' '.join(str(exc).split())[:500]})"
        )
        # Recorded so the service does not try again on every load; a later successful export clears it.
        _write_meta(path, {**entry, "error": message})
        raise ExportError(message) from exc
    _write_meta(path, entry)
    log.info("exported %s to %s", path.name, ", ".join(f for f in (ONNX_FILE, entry.get("int8_file")) if f))
    return entry


def export_for_serving(checkpoint_dir: str | Path) -> dict[str, Any]:
    """Export fp32 and int8 graphs after training; never raises: a failure is returned as ``error``.

    The version stays servable on torch without a graph; the result goes into the job's metrics.
    """
    try:
        entry = export_onnx(checkpoint_dir, quantize="int8")
    except Exception as exc:  # an export problem must not fail the training job that produced the model
        log.warning("ONNX export of %s failed; it will serve on torch: %s", Path(checkpoint_dir).name, exc)
        return {"exported": False, "error": str(exc)}
    return {"exported": True, "file": entry["file"], "int8_file": entry.get("int8_file"), "opset": OPSET}
