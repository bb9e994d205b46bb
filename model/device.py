"""Device selection, CPU thread count and mixed-precision autocast."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from model.config import DEVICES


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without one raises ValueError."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES:
        raise ValueError(f"device: must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_cpu_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` or to the CPUs this process may use; returns the count."""
    n = max(1, available_cpus() if n is None else n)
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 (or fp16 where bf16 is unsupported) autocast on CUDA; nothing on CPU."""
    if device.type != "cuda":
        yield
        return
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast("cuda", dtype=dtype):
        yield
