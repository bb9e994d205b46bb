"""Settings: FUSION_ environment variables, .env files and clear validation errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import InferencePlan, Settings


def test_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.host, settings.port, settings.device) == ("127.0.0.1", 8000, "auto")
    assert settings.api_key is None
    assert settings.allowed_image_types == ("jpeg", "png", "webp", "gif", "bmp")
    assert settings.max_image_bytes == 10 * 1024 * 1024


def test_environment_variables_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUSION_MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("FUSION_DEVICE", "CPU")
    monkeypatch.setenv("FUSION_API_KEY", "k")
    monkeypatch.setenv("FUSION_ALLOWED_IMAGE_TYPES", "jpg, png")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.model_dir == tmp_path / "m"
    assert settings.device == "cpu"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    assert settings.allowed_image_types == ("jpeg", "png")


def test_dotenv_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("FUSION_PORT=9100\nFUSION_LOG_FORMAT=json\n")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert (settings.port, settings.log_format) == (9100, "json")


def test_empty_api_key_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_API_KEY", "")
    assert Settings(_env_file=None).api_key is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 0),
        ("device", "tpu"),
        ("log_format", "xml"),
        ("allowed_image_types", "jpeg,svg"),
        ("max_wait_ms", -1),
        ("port", 70000),
    ],
)
def test_bad_values_name_the_setting(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        kwargs: dict[str, Any] = {field: value}
        Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("cpus", "device", "expected"),
    [
        (2, "cpu", InferencePlan(4, 2, 1, 0)),  # this project's 2-core machine: one forward per core
        (16, "cpu", InferencePlan(4, 4, 4, 0)),
        (1, "cpu", InferencePlan(4, 1, 1, 0)),
        (16, "cuda", InferencePlan(32, 1, 15, 8)),  # one thread feeds the GPU, the cores decode
        (1, "cuda", InferencePlan(32, 1, 1, 1)),
    ],
)
def test_inference_plan_defaults_follow_the_device_and_cores(
    monkeypatch: pytest.MonkeyPatch, cpus: int, device: str, expected: InferencePlan
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert Settings(_env_file=None).inference_plan(device) == expected  # type: ignore[call-arg]


def test_inference_plan_keeps_the_values_that_were_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    settings = Settings(_env_file=None, max_batch_size=16, inference_threads=2)  # type: ignore[call-arg]
    assert settings.inference_plan("cpu") == InferencePlan(16, 2, 4, 0)
    assert settings.inference_plan("cuda") == InferencePlan(16, 2, 7, 7)
    pinned = Settings(_env_file=None, torch_threads=3, decode_threads=2)  # type: ignore[call-arg]
    assert pinned.inference_plan("cpu").torch_threads == 3
    assert pinned.inference_plan("cpu").decode_threads == 2


def test_image_types_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_ALLOWED_IMAGE_TYPES", '["png", "gif"]')
    assert Settings(_env_file=None).allowed_image_types == ("png", "gif")  # type: ignore[call-arg]
