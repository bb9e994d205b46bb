"""Fixtures shared by all tests; builders live in tests/factories.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_jpeg, make_png, save_tiny_checkpoint


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
