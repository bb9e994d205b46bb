"""ModelHolder: a swap frees the replaced model once nothing uses it, and hands its memory back."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from fusion_testkit.processes import rss_bytes
from model.predictor import Predictor
from service.runtime import model_holder
from service.runtime.model_holder import ModelHolder, return_freed_memory


def _rss_mib() -> float:
    return rss_bytes(os.getpid()) / 2**20


def test_a_replaced_model_is_freed_once_its_last_user_drops_it_and_its_memory_returned(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    returned: list[int] = []
    monkeypatch.setattr(model_holder, "return_freed_memory", lambda: returned.append(1))
    holder = ModelHolder()
    holder.swap(Predictor.from_checkpoint(tiny_checkpoint, device="cpu"))
    assert returned == []  # nothing was replaced

    in_flight = holder.predictor  # a batch still bound to the first model
    holder.swap(Predictor.from_checkpoint(tiny_checkpoint, device="cpu"))
    assert holder.retired_count() == 1 and returned == []

    del in_flight
    gc.collect()
    holder.release_retired()
    assert holder.retired_count() == 0 and returned == [1]
    holder.release_retired()
    assert returned == [1]  # once per freed model, not once per batch


@pytest.mark.skipif(model_holder._malloc_trim() is None, reason="the C library has no malloc_trim")
def test_return_freed_memory_shrinks_the_resident_set_after_a_large_free() -> None:
    blocks = [bytearray(4096) for _ in range(60_000)]  # about 240 MiB on the C heap, below the mmap threshold
    keep = bytearray(4096)  # allocated last: the heap's top stays in use, so free() alone cannot shrink it
    before = _rss_mib()
    del blocks
    gc.collect()
    freed_only = _rss_mib()
    return_freed_memory()
    after = _rss_mib()
    assert before - freed_only < 100, (before, freed_only)  # glibc kept the freed blocks
    assert freed_only - after > 150, (before, freed_only, after)
    del keep
