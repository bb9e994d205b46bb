"""MicroBatcher: batches under concurrency, per-item errors, bounded queue, model binding at submission."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_testkit.factories import make_jpeg, save_tiny_checkpoint
from model.images import ImageDecodeError
from model.predictor import Predictor
from service.runtime.batcher import MicroBatcher, NotReadyError, QueueFullError
from service.runtime.model_holder import ModelHolder


def _predictor(path: Path, **overrides: Any) -> Predictor:
    return Predictor.from_checkpoint(save_tiny_checkpoint(path, **overrides), device="cpu")


@pytest.fixture
def holder(tmp_path: Path) -> ModelHolder:
    holder = ModelHolder()
    holder.swap(_predictor(tmp_path / "v1"))
    return holder


@pytest.fixture
def batches() -> list[int]:
    return []


@pytest.fixture(params=[2, 0], ids=["decode-pool", "decode-on-inference-thread"])
def batcher(
    holder: ModelHolder, batches: list[int], request: pytest.FixtureRequest
) -> Iterator[MicroBatcher]:
    batcher = MicroBatcher(
        holder, max_batch_size=8, max_wait_ms=20, decode_threads=request.param, on_batch=batches.append
    )
    batcher.start()
    yield batcher
    batcher.stop()


def test_concurrent_requests_share_forward_passes(batcher: MicroBatcher, batches: list[int]) -> None:
    async def main() -> list[Any]:
        jobs = [batcher.predict(make_jpeg((i * 10, 0, 0)), f"text {i}") for i in range(20)]
        return await asyncio.gather(*jobs)

    results = asyncio.run(main())
    assert len(results) == 20
    assert sum(batches) == 20
    assert max(batches) > 1
    assert max(batches) <= 8


def test_several_inference_threads_run_forwards_at_once_and_stop_cleanly(
    holder: ModelHolder, batches: list[int]
) -> None:
    forwarding: set[str] = set()
    overlapped = threading.Event()
    lock = threading.Lock()
    predictor = holder.predictor
    assert predictor is not None
    real_predict = predictor.predict_batch

    def slow_predict(*args: Any, **kwargs: Any) -> Any:
        with lock:
            forwarding.add(threading.current_thread().name)
            if len(forwarding) > 1:
                overlapped.set()
        overlapped.wait(timeout=2)  # hold this forward until another thread is in one too
        with lock:
            forwarding.discard(threading.current_thread().name)
        return real_predict(*args, **kwargs)

    predictor.predict_batch = slow_predict  # type: ignore[method-assign]
    batcher = MicroBatcher(holder, max_batch_size=1, inference_threads=2, on_batch=batches.append)
    batcher.start()

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.predict(None, f"text {i}") for i in range(6)))

    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    assert overlapped.is_set()
    assert len(results) == 6
    assert sum(batches) == 6


def test_batched_results_equal_single_results(batcher: MicroBatcher, holder: ModelHolder) -> None:
    images = [make_jpeg((i * 40, 200 - i * 30, 90)) for i in range(5)]
    texts = ["good", "bad", None, "fine day", "awful"]

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(batcher.predict(img, txt) for img, txt in zip(images, texts, strict=True))
        )

    served = asyncio.run(main())
    predictor = holder.predictor
    assert predictor is not None
    for img, txt, result in zip(images, texts, served, strict=True):
        (alone,) = predictor.predict_batch([img], [txt])
        assert result.prediction.label == alone.label
        for label, p in alone.probabilities.items():
            assert result.prediction.probabilities[label] == pytest.approx(p, abs=1e-5)
        assert result.version == predictor.version


def test_bad_image_fails_alone(batcher: MicroBatcher) -> None:
    async def main() -> list[Any]:
        jobs = [
            batcher.predict(make_jpeg(), "ok"),
            batcher.predict(b"not an image", "x"),
            batcher.predict(None, "hi"),
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    good, bad, text_only = asyncio.run(main())
    assert isinstance(bad, ImageDecodeError)
    assert good.prediction.modalities_used == ["image", "text"]
    assert text_only.prediction.modalities_used == ["text"]


def test_item_the_model_rejects_does_not_fail_its_batch_mates(tmp_path: Path, batches: list[int]) -> None:
    holder = ModelHolder()
    holder.swap(_predictor(tmp_path / "both", modality_dropout=0.0))  # needs image and text
    batcher = MicroBatcher(holder, max_batch_size=8, max_wait_ms=50, on_batch=batches.append)
    batcher.start()

    async def main() -> list[Any]:
        jobs = [
            batcher.predict(None, f"text only {i}") if i == 2 else batcher.predict(make_jpeg(), "t")
            for i in range(5)
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    assert isinstance(results[2], ValueError)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 2)


@pytest.mark.parametrize(("decode_threads", "decoder"), [(2, "decode"), (0, "inference")])
def test_images_are_decoded_in_the_pool_or_by_the_inference_thread(
    holder: ModelHolder, decode_threads: int, decoder: str
) -> None:
    threads: list[str] = []
    os_names: dict[str, str] = {}

    def decode(predictor: Predictor, data: bytes) -> Any:
        threads.append(threading.current_thread().name)
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        os_names[threading.current_thread().name] = comm
        return predictor.preprocess_image(data)

    batcher = MicroBatcher(holder, decode=decode, decode_threads=decode_threads)
    batcher.start()

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.predict(make_jpeg(), "t") for _ in range(6)))

    try:
        assert len(asyncio.run(main())) == 6
    finally:
        batcher.stop()
    assert len(threads) == 6 and all(
        name.startswith(f"{decoder}-") or name.startswith(f"{decoder}_") for name in threads
    )
    # named for the OS too, so top -H and the serving benchmark tell them apart
    assert all(os_names[name] == name for name in threads)


def test_full_queue_raises_with_retry_hint(holder: ModelHolder) -> None:
    release = threading.Event()

    def slow_decode(predictor: Predictor, data: bytes) -> Any:
        release.wait(5)
        return predictor.preprocess_image(data)

    batcher = MicroBatcher(holder, decode=slow_decode, max_queue=2, decode_threads=2)
    batcher.start()

    async def main() -> tuple[list[Any], BaseException | None]:
        waiting = [asyncio.ensure_future(batcher.predict(make_jpeg(), "t")) for _ in range(2)]
        await asyncio.sleep(0.05)
        try:
            await batcher.predict(None, "one too many")
            error = None
        except QueueFullError as exc:
            error = exc
        release.set()
        return await asyncio.gather(*waiting), error

    try:
        results, error = asyncio.run(main())
    finally:
        release.set()
        batcher.stop()
    assert isinstance(error, QueueFullError)
    assert error.retry_after_s >= 1
    assert len(results) == 2
    assert batcher.depth == 0


@pytest.mark.parametrize(("threads", "expected_s"), [(1, 8), (2, 4), (4, 2)])
def test_retry_hint_counts_the_batches_ahead_shared_by_the_inference_threads(
    holder: ModelHolder, threads: int, expected_s: int
) -> None:
    batcher = MicroBatcher(holder, max_batch_size=4, max_queue=32, inference_threads=threads)
    batcher._depth, batcher._batch_seconds = 32, 1.0  # 8 batches of 4 ahead, 1 s each
    with pytest.raises(QueueFullError) as caught:
        batcher.check_capacity(1)
    assert caught.value.retry_after_s == expected_s


def test_no_model_raises_not_ready() -> None:
    batcher = MicroBatcher(ModelHolder())
    batcher.start()
    try:
        with pytest.raises(NotReadyError):
            asyncio.run(batcher.predict(None, "hello"))
    finally:
        batcher.stop()


def test_request_finishes_on_the_model_it_started_on(tmp_path: Path, holder: ModelHolder) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow_decode(predictor: Predictor, data: bytes) -> Any:
        started.set()
        release.wait(5)
        return predictor.preprocess_image(data)

    batcher = MicroBatcher(holder, decode=slow_decode)
    batcher.start()
    old_version = holder.version
    new = _predictor(tmp_path / "v2")

    async def main() -> Any:
        pending = asyncio.ensure_future(batcher.predict(make_jpeg(), "t"))
        await asyncio.to_thread(started.wait, 5)
        holder.swap(new)  # while the first request is in flight
        release.set()
        return await pending, await batcher.predict(None, "after the swap")

    try:
        (first, second) = asyncio.run(main())
    finally:
        release.set()
        batcher.stop()
    assert first.version == old_version
    assert second.version == new.version
    assert holder.retired_count() == 0  # the old model went away with its last request
