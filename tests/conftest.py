"""Fixtures shared by all tests; builders live in fusion_testkit/factories.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fusion_testkit.factories import make_jpeg, make_png, save_tiny_checkpoint


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine two spinning threads run 10x slower.

    Per test rather than per session: code under test (the CLI, an app's lifespan) resizes the pool.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def jpeg_bytes() -> bytes:
    """A 32x32 RGB JPEG."""
    return make_jpeg()


@pytest.fixture
def png_bytes() -> bytes:
    """A 32x32 RGB PNG."""
    return make_png()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained tiny cnn + bow checkpoint directory with labels negative/positive."""
    return save_tiny_checkpoint(tmp_path / "tiny-v1")
