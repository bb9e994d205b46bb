"""The ONNX graphs of a checkpoint: what each computes, and its named inputs and outputs.

`InferenceGraph` is the whole inference of a model (encoders, fusion head, explain outputs). A model with
image tags has two: `ImageGraph` (pixels -> image features and the tags' class ids) runs first, since its
texts need their tags before they can be tokenized, and the main graph then takes image features.
`model.export` traces, checks and writes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model.fusion import FusionClassifier

IMAGE_OUTPUTS = ("image_features", "tag_ids")


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
        if "image_features" in named:
            img = self._scatter(named["image_features"], image_present)
        if "input_ids" in named:
            tokens = {"input_ids": named["input_ids"], "attention_mask": named["attention_mask"]}
            txt = self._scatter(self.model.encode_text(tokens), text_present)
        nobody = torch.zeros_like(image_present)
        out = self.model.head(img, txt, image_present, text_present)
        image_only = self.model.head(img, None, image_present, nobody).logits
        text_only = self.model.head(None, txt, nobody, text_present).logits
        probs = [torch.softmax(logits.float(), dim=-1) for logits in (out.logits, image_only, text_only)]
        return (*probs, out.gate) if out.gate is not None else tuple(probs)


class ImageGraph(nn.Module):
    """The image graph of a model with image tags: pixels -> (image features, the top tags' class ids)."""

    def __init__(self, model: FusionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [rows, D] and ImageNet class ids [rows, k], likeliest first."""
        tagger = self.model.image_tagger
        assert tagger is not None
        features = self.model.encode_image(pixels)
        return features, tagger(features)


def graph_inputs(model: FusionClassifier) -> list[str]:
    """Input names of the graph of ``model`` (only the encoders it has; image features with image tags)."""
    names = []
    if model.image_encoder is not None:
        names = ["image_features" if model.image_tagger is not None else "pixels"]
    if model.text_encoder is not None:
        names += ["input_ids", "attention_mask"]
    return [*names, "image_present", "text_present"]


def graph_outputs(model: FusionClassifier) -> list[str]:
    """Output names: probabilities [B, C] for fused / image-only / text-only, and gate [B, 2] if gated."""
    names = ["probabilities", "image_only", "text_only"]
    return [*names, "gate"] if model.config.fusion == "gated" else names


def _image_width(model: FusionClassifier) -> int:
    return model.image_encoder.out_dim if model.image_encoder is not None else 0


def example_inputs(
    model: FusionClassifier, image_present: list[bool], text_present: list[bool], texts: list[str]
) -> dict[str, torch.Tensor]:
    """Graph inputs for rows with the given modalities: random pixels, ``texts`` for the text rows."""
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "pixels": torch.randn(sum(image_present), 3, size, size, generator=generator),
        "image_features": torch.randn(sum(image_present), _image_width(model), generator=generator),
        "image_present": torch.tensor(image_present),
        "text_present": torch.tensor(text_present),
    }
    if model.text_encoder is not None:
        inputs.update(model.tokenize(texts))
    return {name: inputs[name] for name in graph_inputs(model)}


def trace_inputs(model: FusionClassifier) -> dict[str, torch.Tensor]:
    """Two rows, each modality in one or both, so that no axis is traced as a constant."""
    return example_inputs(model, [True, True], [True, False], ["an example text to trace"])


def dynamic_axes(model: FusionClassifier) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {
        "pixels": {0: "image_rows"},
        "image_features": {0: "image_rows"},
        "input_ids": {0: "text_rows", 1: "tokens"},
        "attention_mask": {0: "text_rows", 1: "tokens"},
        "image_present": {0: "batch"},
        "text_present": {0: "batch"},
    }
    axes = {name: axes[name] for name in graph_inputs(model)}
    axes.update({name: {0: "batch"} for name in graph_outputs(model)})
    return axes


def describe_input(name: str, model: FusionClassifier) -> dict[str, Any]:
    size = model.config.image_size
    shapes: dict[str, tuple[list[Any], str, str]] = {
        "pixels": (
            ["image_rows", 3, size, size],
            "float32",
            "normalised pixels of the rows that have an image",
        ),
        "image_features": (
            ["image_rows", _image_width(model)],
            "float32",
            "image graph features of the rows that have an image",
        ),
        "input_ids": (
            ["text_rows", "tokens"],
            "int64",
            "token ids of the rows that have a text (with the image graph's tags, where the model has them)",
        ),
        "attention_mask": (["text_rows", "tokens"], "int64", "1 for real tokens, 0 for padding"),
        "image_present": (["batch"], "bool", "which rows have an image (as many true as image_rows)"),
        "text_present": (["batch"], "bool", "which rows have a text (as many true as text_rows)"),
    }
    shape, dtype, doc = shapes[name]
    return {"shape": shape, "dtype": dtype, "description": doc}


def describe_output(name: str, model: FusionClassifier) -> dict[str, Any]:
    if name == "gate":
        return {"shape": ["batch", 2], "dtype": "float32", "description": "fusion weights (image, text)"}
    doc = {"probabilities": "fused", "image_only": "image alone", "text_only": "text alone"}[name]
    return {
        "shape": ["batch", len(model.labels)],
        "dtype": "float32",
        "description": f"class probabilities, {doc}, in label order",
    }
