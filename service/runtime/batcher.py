"""MicroBatcher: one forward per batch on dedicated inference threads; images decoded there or in a pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.runtime.model_holder import ModelHolder
from service.runtime.thread_names import name_os_thread

if TYPE_CHECKING:
    from model.predictor import BasePredictor, Prediction

log = logging.getLogger(__name__)

DecodeFn = Callable[["BasePredictor", bytes], Any]
"""Turns raw image bytes into the predictor's input tensor (in the decode pool, or the inference thread)."""


class QueueFullError(RuntimeError):
    """Too many requests are waiting; the caller should retry after ``retry_after_s``."""

    def __init__(self, depth: int, retry_after_s: int) -> None:
        super().__init__(
            f"the prediction queue is full ({depth} requests waiting); retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class NotReadyError(RuntimeError):
    """No model is loaded yet."""


class BatcherStoppedError(RuntimeError):
    """The server is shutting down."""


@dataclass(frozen=True)
class ServedPrediction:
    """One prediction and the version of the model that made it."""

    prediction: Prediction
    version: str


@dataclass(eq=False)
class _Item:
    predictor: BasePredictor  # bound at submission: a swap never moves a request to another model
    text: str | None
    explain: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ServedPrediction]
    image: Any = None
    data: bytes | None = None  # still to decode, on the inference thread (no decode pool)


_STOP = object()


def _settle(future: asyncio.Future[ServedPrediction], value: Any, error: BaseException | None) -> None:
    """Runs on the event loop: resolve unless the request went away meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class MicroBatcher:
    """Collects concurrent predictions into batches of up to ``max_batch_size``.

    A batch takes what is queued; with a decode pool it also waits up to ``max_wait_ms`` for images
    still being decoded.

    Images are decoded in ``decode_threads`` threads, or with ``decode_threads=0`` by the inference
    thread just before the forward (no thread competes with the forwards for the cores: best on CPU);
    forward passes run on ``inference_threads`` dedicated threads (one per core with one torch thread
    each suits small CPU models), never on the event loop. At most ``max_queue`` requests are admitted
    at a time; beyond that :class:`QueueFullError`. A failing batch is retried item by item so one bad
    input fails alone.
    """

    def __init__(
        self,
        holder: ModelHolder,
        *,
        decode: DecodeFn | None = None,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        decode_threads: int = 2,
        inference_threads: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.holder = holder
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._decode: DecodeFn = decode or (lambda predictor, data: predictor.preprocess_image(data))
        self._decode_threads = decode_threads
        self._inference_threads = inference_threads
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._decoding = 0  # admitted images still being decoded: a batch is worth waiting for them
        self._depth = 0  # admitted requests not yet answered (event-loop thread only)
        self._batch_seconds = 0.05  # moving average, for the Retry-After hint
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def depth(self) -> int:
        """Requests admitted and not yet answered."""
        return self._depth

    def start(self) -> None:
        """Start the decode pool (if any) and the inference threads."""
        if self._threads:
            raise RuntimeError("batcher already started")
        if self._decode_threads > 0:
            self._pool = ThreadPoolExecutor(
                self._decode_threads, thread_name_prefix="decode", initializer=name_os_thread
            )
        self._threads = [
            threading.Thread(target=self._run, name=f"inference-{i}", daemon=True)
            for i in range(self._inference_threads)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Finish everything admitted, then stop the threads (blocking; call from a worker thread)."""
        self._stopping = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for _ in self._threads:  # one stop token each; a collector that meets one puts it back
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        while True:  # anything that raced past the stop flag gets a clear answer instead of hanging
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Item):
                self._deliver(item, None, BatcherStoppedError("the server is shutting down"))

    async def predict(
        self, image: bytes | None, text: str | None, *, explain: bool = False
    ) -> ServedPrediction:
        """Predict one (image, text) pair; either may be None when the model supports it."""
        if not self._threads or self._stopping:
            raise BatcherStoppedError("the server is shutting down")
        self.check_capacity(1)
        predictor = self.holder.predictor
        if predictor is None:
            raise NotReadyError("no model is loaded")
        loop = asyncio.get_running_loop()
        item = _Item(predictor, text, explain, loop, loop.create_future())
        self._depth += 1
        try:
            if image is None or self._pool is None:
                item.data = image
                self._queue.put(item)
            else:
                with self._lock:
                    self._decoding += 1
                self._pool.submit(self._decode_and_enqueue, item, image)
            return await item.future
        finally:
            self._depth -= 1

    def check_capacity(self, count: int) -> None:
        """Raise ``QueueFullError`` unless ``count`` more requests can be admitted now."""
        if self._depth + count > self.max_queue:
            raise QueueFullError(self._depth, self._retry_after())

    def _retry_after(self) -> int:
        """Seconds until the queue has drained: the batches ahead, shared by the inference threads."""
        batches_ahead = self._depth / self.max_batch_size
        return max(1, math.ceil(batches_ahead * self._batch_seconds / self._inference_threads))

    def _decode_into(self, item: _Item, data: bytes) -> Exception | None:
        """Decode ``data`` into ``item.image``; a bad image is returned as this request's error alone."""
        try:
            item.image = self._decode(item.predictor, data)
        except Exception as exc:
            return exc
        return None

    def _decode_and_enqueue(self, item: _Item, data: bytes) -> None:
        # Skip the work when the client is gone.
        error = None if item.future.done() else self._decode_into(item, data)
        with self._lock:  # atomically, so the collector never waits for an item already queued
            self._decoding -= 1
            if error is None and not item.future.done():
                self._queue.put(item)
        if error is not None:
            self._deliver(item, None, error)

    def _run(self) -> None:
        name_os_thread()
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = self._collect(first)
            started = time.perf_counter()
            try:
                self._process(batch)
            except Exception as exc:  # never let the inference thread die; fail this batch instead
                log.exception("inference batch failed")
                for item in batch:
                    self._deliver(item, None, exc)
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.perf_counter() - started)
            del batch, first
            self.holder.release_retired()

    def _collect(self, first: _Item) -> list[_Item]:
        """Up to ``max_batch_size`` items; waits (up to ``max_wait_ms``) only while more are being decoded."""
        batch = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                with self._lock:
                    nothing_coming = self._decoding == 0 and self._queue.empty()
                if nothing_coming or remaining <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if nxt is _STOP:
                self._queue.put(_STOP)  # stop after this batch
                break
            batch.append(nxt)
        return batch

    def _process(self, batch: list[_Item]) -> None:
        groups: dict[tuple[int, bool], list[_Item]] = {}
        for item in batch:
            if item.future.done():  # skip requests whose client is gone
                continue
            if item.data is not None:
                data, item.data = item.data, None
                error = self._decode_into(item, data)
                if error is not None:
                    self._deliver(item, None, error)
                    continue
            groups.setdefault((id(item.predictor), item.explain), []).append(item)
        if self._on_batch is not None:
            self._on_batch(sum(len(group) for group in groups.values()))
        for group in groups.values():
            self._forward(group)

    def _forward(self, group: list[_Item]) -> None:
        predictor = group[0].predictor
        try:
            predictions = predictor.predict_batch(
                [item.image for item in group], [item.text for item in group], explain=group[0].explain
            )
        except Exception as exc:
            if len(group) == 1:
                self._deliver(group[0], None, exc)
            else:  # find the culprit: batch mates must not fail with it
                for item in group:
                    self._forward([item])
            return
        for item, prediction in zip(group, predictions, strict=True):
            self._deliver(item, ServedPrediction(prediction, predictor.version), None)

    @staticmethod
    def _deliver(item: _Item, value: ServedPrediction | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            item.loop.call_soon_threadsafe(_settle, item.future, value, error)
