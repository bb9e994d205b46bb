"""ONNX export: the whole inference graph (encoders, fusion head, explain outputs) beside a checkpoint."""

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

log = logging.getLogger(__name__)

OPSET = 17
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# Written into config.json under this key: what `model.onnx_predictor` needs to feed and read the graph.
META_KEY = "onnx"
EXPORT_FORMATS = ("onnx",)
QUANTIZE_MODES = ("int8",)


class ExportError(RuntimeError):
    """A graph could not be exported or checked; the message says which step failed."""


class InferenceGraph(nn.Module):
    """What the exported graph computes: encoders on the rows that have each modality, then the head.

    Pixels and token ids hold only the rows whose ``*_present`` is true (in order), exactly as
    ``Predictor`` feeds its encoders, so an absent modality costs nothing; the head runs three times
    for the fused, image-only and text-only probabilities (and the gate weights, for gated fusion).
    """

    def __init__(self, model: FusionClassifier) -> None:
        super().__init__()
        self.model = model

    def _scatter(self, encoded: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        rows = present.nonzero().squeeze(1)
        feats = torch.zeros(present.shape[0], encoded.shape[1], dtype=encoded.dtype)
        return feats.index_put((rows,), encoded)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Inputs in ``graph_inputs`` order; outputs in ``graph_outputs`` order."""
        named = dict(zip(graph_inputs(self.model), inputs, strict=True))
        image_present, text_present = named["image_present"], named["text_present"]
        img = txt = None
        if "pixels" in named:
            img = self._scatter(self.model.encode_image(named["pixels"]), image_present)
        if "input_ids" in named:
            tokens = {"input_ids": named["input_ids"], "attention_mask": named["attention_mask"]}
            txt = self._scatter(self.model.encode_text(tokens), text_present)
        nobody = torch.zeros_like(image_present)
        out = self.model.head(img, txt, image_present, text_present)
        image_only = self.model.head(img, None, image_present, nobody).logits
        text_only = self.model.head(None, txt, nobody, text_present).logits
        probs = [torch.softmax(logits.float(), dim=-1) for logits in (out.logits, image_only, text_only)]
        return (*probs, out.gate) if out.gate is not None else tuple(probs)


def graph_inputs(model: FusionClassifier) -> list[str]:
    """Input names of the graph of ``model`` (only the encoders it has)."""
    names = ["pixels"] if model.image_encoder is not None else []
    if model.text_encoder is not None:
        names += ["input_ids", "attention_mask"]
    return [*names, "image_present", "text_present"]


def graph_outputs(model: FusionClassifier) -> list[str]:
    """Output names: probabilities [B, C] for fused / image-only / text-only, and gate [B, 2] if gated."""
    names = ["probabilities", "image_only", "text_only"]
    return [*names, "gate"] if model.config.fusion == "gated" else names


def _example_inputs(
    model: FusionClassifier, image_present: list[bool], text_present: list[bool], texts: list[str]
) -> dict[str, torch.Tensor]:
    """Graph inputs for rows with the given modalities: random pixels, ``texts`` for the text rows."""
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "pixels": torch.randn(sum(image_present), 3, size, size, generator=generator),
        "image_present": torch.tensor(image_present),
        "text_present": torch.tensor(text_present),
    }
    if model.text_encoder is not None:
        inputs.update(model.tokenize(texts))
    return {name: inputs[name] for name in graph_inputs(model)}


def _trace_inputs(model: FusionClassifier) -> dict[str, torch.Tensor]:
    """Two rows, each modality in one or both, so that no axis is traced as a constant."""
    return _example_inputs(model, [True, True], [True, False], ["an example text to trace"])


def _check_parity(model: FusionClassifier, graph: InferenceGraph, target: Path) -> None:
    """Run the graph on other shapes than the traced ones: it must give torch's outputs within 1e-4."""
    import onnxruntime as ort

    texts = ["a longer text than the one traced, to change the length", "two"]
    inputs = _example_inputs(model, [True, False, True], [True, True, False], texts)
    with torch.no_grad():
        expected = graph(*inputs.values())
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    for name, want, got in zip(graph_outputs(model), expected, session.run(None, feeds), strict=True):
        diff = float((want - torch.from_numpy(got)).abs().max())
        if not diff <= 1e-4:
            raise ExportError(f"{name}: the graph differs from torch by {diff:.2g} on a batch of 3")


def _dynamic_axes(model: FusionClassifier) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {
        "pixels": {0: "image_rows"},
        "input_ids": {0: "text_rows", 1: "tokens"},
        "attention_mask": {0: "text_rows", 1: "tokens"},
        "image_present": {0: "batch"},
        "text_present": {0: "batch"},
    }
    axes = {name: axes[name] for name in graph_inputs(model)}
    axes.update({name: {0: "batch"} for name in graph_outputs(model)})
    return axes


def export_problem(meta: dict[str, Any]) -> str | None:
    """Why the last export of this checkpoint failed (recorded in its config.json), or None."""
    return (meta.get(META_KEY) or {}).get("error")


def _write_meta(checkpoint_dir: Path, entry: dict[str, Any]) -> None:
    """Set ``entry`` as the ``onnx`` entry of config.json, atomically (temp + rename)."""
    meta = read_checkpoint_meta(checkpoint_dir)
    meta[META_KEY] = entry
    text = json.dumps(meta, indent=2, allow_nan=False)
    write_atomic(checkpoint_dir / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=True)


def _export_graph(model: FusionClassifier, target: Path) -> list[str]:
    """Export and check the graph at ``target``; returns the names of its inputs."""
    import onnx

    graph = InferenceGraph(model).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Python values taken from tensors (padding sizes, "any row present?") are meant to be constant
        # here; the parity check below runs the graph on other shapes to prove it.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            tuple(_trace_inputs(model).values()),
            str(target),
            input_names=graph_inputs(model),
            output_names=graph_outputs(model),
            dynamic_axes=_dynamic_axes(model),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the dynamo exporter needs onnxscript; see docs/PERFORMANCE.md
        )
    onnx.checker.check_model(str(target), full_check=True)
    _check_parity(model, graph, target)
    # Inputs an encoder ignores (the bag of words reads no attention mask) are pruned by the exporter.
    return [i.name for i in onnx.load(str(target), load_external_data=False).graph.input]


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
        "outputs": {name: _describe_output(name, model) for name in graph_outputs(model)},
    }
    entry["file"] = None  # until the graph is written and checked
    try:
        inputs: list[str] = []
        write_atomic(path / ONNX_FILE, lambda tmp: inputs.extend(_export_graph(model, tmp)), durable=True)
        entry.update(file=ONNX_FILE, inputs={name: _describe_input(name, model) for name in inputs})
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


def _describe_input(name: str, model: FusionClassifier) -> dict[str, Any]:
    size = model.config.image_size
    shapes: dict[str, tuple[list[Any], str, str]] = {
        "pixels": (
            ["image_rows", 3, size, size],
            "float32",
            "normalised pixels of the rows that have an image",
        ),
        "input_ids": (["text_rows", "tokens"], "int64", "token ids of the rows that have a text"),
        "attention_mask": (["text_rows", "tokens"], "int64", "1 for real tokens, 0 for padding"),
        "image_present": (["batch"], "bool", "which rows have an image (as many true as image_rows)"),
        "text_present": (["batch"], "bool", "which rows have a text (as many true as text_rows)"),
    }
    shape, dtype, doc = shapes[name]
    return {"shape": shape, "dtype": dtype, "description": doc}


def _describe_output(name: str, model: FusionClassifier) -> dict[str, Any]:
    if name == "gate":
        return {"shape": ["batch", 2], "dtype": "float32", "description": "fusion weights (image, text)"}
    doc = {"probabilities": "fused", "image_only": "image alone", "text_only": "text alone"}[name]
    return {
        "shape": ["batch", len(model.labels)],
        "dtype": "float32",
        "description": f"class probabilities, {doc}, in label order",
    }


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
