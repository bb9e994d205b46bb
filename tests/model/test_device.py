"""Tests for model.device."""

from __future__ import annotations

import os

import pytest
import torch

from model.device import autocast, available_cpus, configure_cpu_threads, resolve_device


def test_cpu_resolves_to_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_picks_cuda_only_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_a_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device: cuda"):
        resolve_device("cuda")


def test_unknown_device_name_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^device: must be one of"):
        resolve_device("tpu")


def test_configure_cpu_threads_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_available_cpus_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert available_cpus() == 3


def test_cpu_threads_default_to_the_available_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_autocast_is_a_no_op_on_cpu() -> None:
    with autocast(torch.device("cpu")):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.float32
