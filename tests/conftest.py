"""Fixtures shared by all tests; builders live in fusion_testkit/factories.py."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test that timed out waiting for an HTTP answer reports where every thread of this process was,
    and which await holds each asyncio task still pending.

    The servers under test mostly run in this process (uvicorn in a thread), so a hang shows up as a
    stack of an inference, decode or event-loop thread, or as a request handler's task waiting.
    """
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(httpx.TimeoutException):
        with tempfile.TemporaryFile("w+") as stacks:
            faulthandler.dump_traceback(stacks, all_threads=True)
            stacks.seek(0)
            report.sections.append(("threads when the HTTP call timed out", stacks.read()))
        report.sections.append(("asyncio tasks still pending", _pending_tasks()))
    return report


def _pending_tasks() -> str:
    """Every pending asyncio task of every loop in this process, with its stack (found through the gc)."""
    out = io.StringIO()
    for task in [obj for obj in gc.get_objects() if type(obj) is asyncio.Task]:
        if not task.done():
            out.write(f"{task!r}\n")
            task.print_stack(limit=12, file=out)
    return out.getvalue()
