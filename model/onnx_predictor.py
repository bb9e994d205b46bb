"""Inference on ONNX Runtime: the exported graph of a checkpoint behind the same ``predict_batch``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import CheckpointError, read_checkpoint_meta, tag_names
from model.config import ModelConfig
from model.device import available_cpus
from model.encoders import build_tokenizer
from model.export import META_KEY
from model.image_tags import class_names
from model.images import DEFAULT_MAX_PIXELS
from model.predictor import BasePredictor, BatchOutput, ImageInput
from model.text import Vocabulary


class GraphError(CheckpointError):
    """The version has no usable ONNX graph (missing, corrupt or not matching its metadata)."""


def session_options(threads: int | None) -> Any:
    """ONNX Runtime options for serving (docs/PERFORMANCE.md explains each choice).

    ``threads`` intra-op threads (None: ORT's default, one per core) so a lone request can use every
    core; no spinning, because on few cores a spinning pool thread takes the core another inference
    thread's forward needs; all graph optimisations; the memory arena on, but no per-shape memory
    patterns, which would be planned again for every token length.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers etc. are not the user's concern
    return options


def graph_file(meta: dict[str, Any], *, int8: bool) -> str | None:
    """File name of the fp32 or int8 graph that ``meta`` (config.json) records, or None."""
    entry = meta.get(META_KEY) or {}
    name = entry.get("int8_file" if int8 else "file")
    return name if isinstance(name, str) else None


class OnnxPredictor(BasePredictor):
    """A checkpoint's exported graph in an ONNX Runtime session shared by every inference thread.

    That session's intra-op pool spans every core, so a lone run uses them all. Runs that overlap
    would share that one pool (on 2 cores: two callers and a pool thread on two cores, each run's
    parallel sections waiting on a thread the other run holds), so once ``open_overlap_session`` has
    opened a second session with fewer threads, a run that starts while another is in flight uses that
    one instead: under load each run gets its share of the cores to itself (docs/PERFORMANCE.md).
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        *,
        int8: bool = False,
        device: str = "cpu",
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        import onnxruntime as ort

        try:
            config = ModelConfig.from_stored(meta["model_config"])
            vocab = Vocabulary.from_dict(meta["vocabulary"]) if meta["vocabulary"] is not None else None
            tokenize = build_tokenizer(config, vocab) if config.text_encoder != "none" else None
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        super().__init__(config, meta, version=path.name, tokenize=tokenize, max_pixels=max_pixels)
        self.runtime = "onnx-int8" if int8 else "onnx"
        name = graph_file(meta, int8=int8)
        if name is None:
            raise GraphError(f"{path}: config.json records no {'int8 ' if int8 else ''}ONNX graph")
        gpu = device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.device = torch.device("cuda" if gpu else "cpu")
        self._graph = path / name
        image_name = meta[META_KEY].get("image_file")
        self._image_graph = path / image_name if isinstance(image_name, str) else None
        self._tag_names = tag_names(meta, path)
        self._providers = providers
        self._threads = threads or available_cpus()
        self.session, self.image_session = self._open_sessions(threads)
        self._overlap_session: Any = None
        self._overlap_image_session: Any = None
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._outputs = [o.name for o in self.session.get_outputs()]
        expected = list(meta[META_KEY]["inputs"])
        if self._inputs != expected:
            raise GraphError(f"{path / name}: inputs {self._inputs} do not match config.json's {expected}")
        if ("image_features" in self._inputs) != (self.image_session is not None):
            raise GraphError(f"{path / name}: takes image features but config.json records no image graph")

    def _open_sessions(self, threads: int | None) -> tuple[Any, Any]:
        """Sessions of the main graph and of the image graph (None without image tags)."""
        image = self._open_session(self._image_graph, threads) if self._image_graph is not None else None
        return self._open_session(self._graph, threads), image

    def _open_session(self, graph: Path, threads: int | None) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(graph), session_options(threads), providers=self._providers)
        except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / NoSuchFile kinds
            raise GraphError(f"{graph}: not a loadable ONNX graph ({exc})") from exc

    def open_overlap_session(self, threads: int) -> bool:
        """Open and warm the session of ``threads`` intra-op threads that overlapping runs use.

        False, opening nothing, where it would not differ from the first session: on CUDA, or when
        ``threads`` is not fewer than the first session's. Raises ``GraphError`` if it cannot open.
        """
        if self.device.type == "cuda" or threads >= self._threads:
            return False
        session, image_session = self._open_sessions(threads)
        images, texts = self._warmup_inputs()
        has_image, has_text = self._present(images, texts)
        pixels = self._pixels_array(images, has_image)
        feeds, _ = self._feeds(pixels, texts, has_image, has_text, image_session, explain=False)
        session.run(["probabilities"], feeds)
        self._overlap_session, self._overlap_image_session = session, image_session
        return True

    @property
    def overlap_threads(self) -> int | None:
        """Intra-op threads of the session for overlapping runs, or None while there is none."""
        session = self._overlap_session
        return None if session is None else int(session.get_session_options().intra_op_num_threads)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        int8: bool = False,
        device: str = "cpu",
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> OnnxPredictor:
        """Open the graph exported beside the checkpoint ``path``; raises ``GraphError`` if it has none."""
        path = Path(path)
        meta = read_checkpoint_meta(path)
        return cls(path, meta, int8=int8, device=device, threads=threads, max_pixels=max_pixels)

    def _pixels_array(self, images: Sequence[ImageInput], has_image: list[bool]) -> np.ndarray | None:
        """Pixels of the rows that have an image (none: [0, 3, S, S]); None for a model without images."""
        if self.config.image_encoder == "none":
            return None
        if any(has_image):
            return self._stack_pixels(images, has_image).numpy()
        size = self.config.image_size
        return np.zeros((0, 3, size, size), dtype=np.float32)

    def _token_feeds(self, texts: Sequence[str | None], has_text: list[bool]) -> dict[str, np.ndarray]:
        tokens = (
            self._tokens(texts, has_text)
            if any(has_text)
            else {"input_ids": torch.zeros(0, 1), "attention_mask": torch.zeros(0, 1)}
        )
        return {k: v.to(torch.long).numpy() for k, v in tokens.items() if k in self._inputs}

    def _feeds(
        self,
        pixels: np.ndarray | None,
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        image_session: Any,
        *,
        explain: bool,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """The main graph's feeds (``pixels``: of the rows that have an image, for either graph), and for
        ``explain`` with image tags, its token feeds without the tags."""
        feeds: dict[str, np.ndarray] = {
            "image_present": np.array(has_image),
            "text_present": np.array(has_text),
        }
        tags: list[list[str]] = []
        if "pixels" in self._inputs and pixels is not None:
            feeds["pixels"] = pixels
        if "image_features" in self._inputs and pixels is not None:
            features, tag_ids = image_session.run(None, {"pixels": pixels})
            feeds["image_features"] = features
            tags = class_names(tag_ids.tolist(), self._tag_names)
        if "input_ids" not in self._inputs:
            return feeds, None
        feeds.update(self._token_feeds(self._with_tags(texts, has_image, has_text, tags), has_text))
        return feeds, self._token_feeds(texts, has_text) if explain and tags else None

    def _run(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str | None],
        has_image: list[bool],
        has_text: list[bool],
        explain: bool,
    ) -> BatchOutput:
        wanted = self._outputs if explain else ["probabilities"]
        pixels = self._pixels_array(images, has_image)
        # Without an image graph the feeds are ready before the run; with one, the texts wait for its tags.
        ready = None
        if self.image_session is None:
            ready = self._feeds(pixels, texts, has_image, has_text, None, explain=explain)
        with self._in_flight_lock:
            overlapping = self._in_flight > 0
            self._in_flight += 1
        sessions = (self.session, self.image_session)
        if overlapping and self._overlap_session is not None:
            sessions = (self._overlap_session, self._overlap_image_session)
        try:
            feeds, plain = ready or self._feeds(
                pixels, texts, has_image, has_text, sessions[1], explain=explain
            )
            outputs = dict(zip(wanted, sessions[0].run(wanted, feeds), strict=True))
            if plain is not None:  # the text-only probabilities read the texts without their image tags
                outputs["text_only"] = sessions[0].run(["text_only"], {**feeds, **plain})[0]
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        lists = {name: value.tolist() for name, value in outputs.items()}
        return BatchOutput(
            lists["probabilities"], lists.get("image_only"), lists.get("text_only"), lists.get("gate")
        )
