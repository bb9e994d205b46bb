"""ModelLoader: loads the store's active version into the ModelHolder, at start-up and whenever it changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from model.checkpoint import check_weights_file, read_checkpoint_meta
from model.images import DEFAULT_MAX_PIXELS
from service.runtime.model_holder import ModelHolder
from service.runtime.model_store import (
    InvalidCheckpointError,
    ModelStore,
    ModelStoreError,
    UnknownVersionError,
)

if TYPE_CHECKING:
    from model.predictor import BasePredictor

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")

log = logging.getLogger(__name__)


class ModelLoader:
    """Keeps the holder in step with the active pointer; the only place predictors are built.

    Loading and warm-up run in a worker thread; the swap happens only once the new predictor is
    warm, so readiness never drops and in-flight requests finish on the predictor they started on.
    With ``overlap_threads`` (each inference thread's share of the cores), an ONNX predictor's second
    session for overlapping runs is opened after the swap, in the background, so it never delays
    readiness; until it is open every run uses the first session.
    """

    def __init__(
        self,
        store: ModelStore,
        holder: ModelHolder,
        *,
        device: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        compile: bool = False,
        runtime: str = "auto",
        onnx_threads: int | None = None,
        overlap_threads: int | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime: must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
        self.store = store
        self.runtime = runtime
        self.onnx_threads = onnx_threads
        self.overlap_threads = overlap_threads
        self._background: set[asyncio.Task[None]] = set()
        self.holder = holder
        self.device = device
        self.max_pixels = max_pixels
        self.compile = compile
        self._lock = asyncio.Lock()
        self._reason = "starting"
        self._failed_version: str | None = None

    @property
    def not_ready_reason(self) -> str | None:
        """Why no model is serving, or None when one is."""
        return None if self.holder.ready else self._reason

    async def sync(self) -> None:
        """Load the version named by the active pointer if it is not the one serving."""
        async with self._lock:
            try:
                version = await asyncio.to_thread(self.store.active_version)
            except ModelStoreError as exc:
                self._set_problem(str(exc))
                return
            if version is None:
                self._set_problem(await asyncio.to_thread(self._empty_store_reason))
                return
            if version in (self.holder.version, self._failed_version):
                return
            try:
                predictor = await self._load(version)
            except ModelStoreError as exc:
                self._failed_version = version
                self._set_problem(f"active {exc}" if isinstance(exc, InvalidCheckpointError) else str(exc))
                return
            self._swap(predictor)

    async def activate(self, version: str) -> None:
        """Load and warm ``version``, then point the store at it and serve it (also the rollback)."""
        async with self._lock:
            predictor = await self._load(version)
            await asyncio.to_thread(self.store.set_active, version)
            self._swap(predictor)

    async def watch(self, interval_s: float) -> None:
        """Poll the active pointer forever so versions promoted elsewhere go live without a restart."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sync()
            except Exception:  # the watcher must survive anything one poll runs into
                log.exception("model watcher: sync failed")

    async def _load(self, version: str) -> BasePredictor:
        if not self.store.exists(version):
            raise UnknownVersionError(version)
        path = self.store.version_path(version)
        if not self.holder.ready:
            self._reason = f"loading model version {version}"
        log.info("loading model version %s on device=%s, runtime=%s", version, self.device, self.runtime)
        try:
            return await asyncio.to_thread(self._build, path)
        except Exception as exc:  # any failure to build or warm up means the version cannot serve
            raise InvalidCheckpointError(version, str(exc) or type(exc).__name__) from exc

    def _build(self, path: Path) -> BasePredictor:
        from model.device import resolve_device

        device = resolve_device(self.device)
        runtime = choose_runtime(self.runtime, device.type)
        if runtime != "torch":
            onnx = self._build_onnx(path, int8=runtime == "onnx-int8", device=device.type)
            if onnx is not None:
                return onnx
        return self._build_torch(path)

    def _build_torch(self, path: Path) -> BasePredictor:
        from model.predictor import Predictor

        predictor = Predictor.from_checkpoint(path, device=self.device, max_pixels=self.max_pixels)
        if self.compile and predictor.device.type == "cuda":
            # Compile the encoders in place: the predictor calls them through the model's methods,
            # which a compiled wrapper of the whole model would bypass.
            for encoder in (predictor.model.image_encoder, predictor.model.text_encoder):
                if encoder is not None:
                    encoder.compile()
        predictor.warmup()
        return predictor

    def _build_onnx(self, path: Path, *, int8: bool, device: str) -> BasePredictor | None:
        """The version's graph on ONNX Runtime, exported first if it has none; None: serve on torch.

        The graph holds its own copy of the weights, but the checkpoint is what the version is: one whose
        weights file is cut short is refused (CheckpointError) rather than served from an older graph.
        """
        from model.export import ExportError, export_onnx, export_problem
        from model.onnx_predictor import OnnxPredictor, graph_file

        kind = "int8 ONNX" if int8 else "ONNX"
        check_weights_file(path)
        meta = read_checkpoint_meta(path)
        if graph_file(meta, int8=int8) is None:
            problem = export_problem(meta)
            if problem is not None:  # tried before (here or in the worker): do not retry on every load
                log.warning("model version %s: no %s graph (%s); serving on torch", path.name, kind, problem)
                return None
            log.info(
                "model version %s has no %s graph: exporting it once, beside its checkpoint", path.name, kind
            )
            try:
                export_onnx(path, quantize="int8" if int8 else None)
            except ExportError as exc:
                log.warning("model version %s: %s export failed, serving on torch: %s", path.name, kind, exc)
                return None
        try:
            predictor = OnnxPredictor.from_checkpoint(
                path, int8=int8, device=device, threads=self.onnx_threads, max_pixels=self.max_pixels
            )
            predictor.warmup()
        except Exception as exc:  # a corrupt or mismatched graph must never stop the version serving
            log.warning("model version %s: %s graph unusable, serving on torch: %s", path.name, kind, exc)
            return None
        return predictor

    def _swap(self, predictor: BasePredictor) -> None:
        self.holder.swap(predictor)
        self._failed_version = None
        log.info(
            "serving model version %s on %s (%s)", predictor.version, predictor.device, predictor.runtime
        )
        if self.overlap_threads is not None:
            task = asyncio.create_task(self._open_overlap_session(predictor, self.overlap_threads))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _open_overlap_session(self, predictor: BasePredictor, threads: int) -> None:
        try:
            opened = await asyncio.to_thread(predictor.open_overlap_session, threads)
        except Exception as exc:  # the first session serves on: this only costs speed under load
            log.warning(
                "model version %s: no second session for overlapping runs, they share one: %s",
                predictor.version,
                exc,
            )
            return
        if opened:
            log.info(
                "model version %s: runs that overlap another now use their own %d-thread session",
                predictor.version,
                threads,
            )

    async def aclose(self) -> None:
        """Wait for background work (a second session still opening) so nothing outlives the app."""
        await asyncio.gather(*self._background, return_exceptions=True)

    def _set_problem(self, reason: str) -> None:
        if reason != self._reason:
            log.warning("model not (re)loaded: %s", reason)
        self._reason = reason

    def _empty_store_reason(self) -> str:
        count = len(self.store.list_versions())
        if count == 0:
            return (
                f"no model versions in the store at {self.store.root}; train one with POST /jobs "
                "or start the server with --bootstrap-demo"
            )
        return (
            f"{count} model version(s) in the store but none is active; use POST /models/{{version}}/activate"
        )


def choose_runtime(requested: str, device_type: str) -> str:
    """``auto`` resolved: ONNX Runtime on CPU; on CUDA torch, unless onnxruntime-gpu is installed."""
    if requested != "auto":
        return requested
    if device_type != "cuda":
        return "onnx"
    import onnxruntime

    return "onnx" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "torch"
