"""Tests for the runtime the model loader picks (FUSION_RUNTIME), export on first load and the fallbacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fusion_testkit.factories import make_jpeg, make_png
from model.checkpoint import read_checkpoint_meta
from model.export import INT8_FILE, ONNX_FILE, export_onnx
from model.onnx_predictor import GraphError, OnnxPredictor
from model.predictor import Predictor
from service.runtime.model_loader import choose_runtime
from service.runtime.model_store import ModelStore
from service.settings import Settings

ClientFactory = Callable[..., TestClient]
JPEG = make_jpeg((220, 60, 20), (48, 40))


def _predict(client: TestClient, image: bytes | None = JPEG, text: str | None = "lovely day") -> Any:
    files: list[Any] = []
    if image is not None:
        files.append(("image", ("a.jpg", image, "image/jpeg")))
    if text is not None:
        files.append(("text", (None, text)))
    response = client.post("/predict?explain=true", files=files)
    assert response.status_code == 200, response.text
    return response.json()


def _model_info(client: TestClient) -> dict[str, str]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return next(s.labels for f in families for s in f.samples if s.name == "model_info")


def test_auto_on_cpu_exports_on_first_load_and_serves_onnx(
    make_client: ClientFactory, store: ModelStore, active_version: str
) -> None:
    path = store.version_path(active_version)
    assert not (path / ONNX_FILE).exists()
    client = make_client(runtime="auto")
    assert (path / ONNX_FILE).is_file()
    assert read_checkpoint_meta(path)["onnx"]["file"] == ONNX_FILE
    assert client.get("/models/active").json()["runtime"] == "onnx"
    assert _model_info(client) == {"version": active_version, "device": "cpu", "runtime": "onnx"}
    served = _predict(client)
    expected = Predictor.from_checkpoint(path, device="cpu").predict_batch(
        [JPEG], ["lovely day"], explain=True
    )[0]
    assert served["label"] == expected.label
    assert served["probabilities"] == pytest.approx(expected.probabilities, abs=1e-4)
    assert served["gate"] == pytest.approx(expected.gate, abs=1e-4)


def test_a_second_start_uses_the_graph_without_exporting_again(
    make_client: ClientFactory, store: ModelStore, active_version: str
) -> None:
    path = store.version_path(active_version)
    export_onnx(path)
    written = (path / ONNX_FILE).stat().st_mtime_ns
    client = make_client(runtime="onnx")
    assert client.get("/models/active").json()["runtime"] == "onnx"
    assert (path / ONNX_FILE).stat().st_mtime_ns == written


def test_missing_modalities_and_explanations_on_onnx(
    make_client: ClientFactory, store: ModelStore, active_version: str
) -> None:
    export_onnx(store.version_path(active_version))
    client = make_client(runtime="onnx")
    image_only = _predict(client, image=make_png(), text=None)
    assert image_only["modalities_used"] == ["image"]
    assert image_only["image_only"] is not None and image_only["text_only"] is None
    text_only = _predict(client, image=None, text="worst traffic ever")
    assert text_only["modalities_used"] == ["text"]
    assert text_only["text_only"] is not None and text_only["image_only"] is None


def test_runtime_torch_ignores_the_graph(
    make_client: ClientFactory, store: ModelStore, active_version: str
) -> None:
    export_onnx(store.version_path(active_version))
    client = make_client(runtime="torch")
    assert client.get("/models/active").json()["runtime"] == "torch"
    assert _model_info(client)["runtime"] == "torch"
    _predict(client)


def test_onnx_int8_quantises_on_first_load(
    make_client: ClientFactory, store: ModelStore, active_version: str
) -> None:
    client = make_client(runtime="onnx-int8")
    assert (store.version_path(active_version) / INT8_FILE).is_file()
    assert client.get("/models/active").json()["runtime"] == "onnx-int8"
    assert set(_predict(client)["probabilities"]) == {"negative", "positive"}


def test_a_truncated_graph_falls_back_to_torch_with_a_log_line(
    make_client: ClientFactory, store: ModelStore, active_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = store.version_path(active_version)
    export_onnx(path)
    graph = path / ONNX_FILE
    graph.write_bytes(graph.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="service.runtime.model_loader"):
        client = make_client(runtime="onnx")
    assert client.get("/health/ready").status_code == 200
    assert client.get("/models/active").json()["runtime"] == "torch"
    _predict(client)
    assert any(
        f"model version {active_version}: ONNX graph unusable, serving on torch" in r.getMessage()
        for r in caplog.records
    )


def test_a_failed_export_falls_back_to_torch_and_is_not_retried(
    make_client: ClientFactory, store: ModelStore, active_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = store.version_path(active_version)
    (path / ONNX_FILE).mkdir()  # the graph cannot be written there
    with caplog.at_level(logging.WARNING, logger="service.runtime.model_loader"):
        client = make_client(runtime="auto")
    assert client.get("/models/active").json()["runtime"] == "torch"
    _predict(client)
    assert "ONNX export failed" in read_checkpoint_meta(path)["onnx"]["error"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service.runtime.model_loader"):
        again = make_client(runtime="auto")
    assert again.get("/models/active").json()["runtime"] == "torch"
    assert not [r for r in caplog.records if "exporting it once" in r.getMessage()]
    assert any("no ONNX graph (" in r.getMessage() for r in caplog.records)


def test_activation_of_a_new_version_swaps_runtime_per_version(
    make_client: ClientFactory, store: ModelStore, active_version: str, make_version: Callable[..., str]
) -> None:
    client = make_client(runtime="onnx")
    newer = make_version(labels=("x", "y", "z"))
    assert client.post(f"/models/{newer}/activate").status_code == 200
    body = client.get("/models/active").json()
    assert (body["serving"], body["runtime"]) == (newer, "onnx")
    assert set(_predict(client)["probabilities"]) == {"x", "y", "z"}


def _serving_predictor(client: TestClient) -> Any:
    return client.app.state.model_holder.predictor  # type: ignore[attr-defined]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_overlapping_runs_get_a_second_session_opened_after_ready(
    make_client: ClientFactory, active_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    message = f"model version {active_version}: runs that overlap another now use their own 1-thread session"
    with caplog.at_level(logging.INFO, logger="service.runtime.model_loader"):
        client = make_client(runtime="onnx", inference_threads=2, torch_threads=1, onnx_threads=2)
        assert client.get("/health/ready").status_code == 200
        # Logged on the event loop once the worker thread has opened the session.
        assert _wait_for(lambda: any(message in r.getMessage() for r in caplog.records))
    assert _serving_predictor(client).overlap_threads == 1
    _predict(client)


def test_no_second_session_when_switched_off_or_one_inference_thread(
    make_client: ClientFactory, active_version: str
) -> None:
    for overrides in ({"onnx_overlap_session": False, "inference_threads": 2}, {"inference_threads": 1}):
        client = make_client(runtime="onnx", torch_threads=1, onnx_threads=2, **overrides)
        _predict(client)
        assert _serving_predictor(client).overlap_threads is None, overrides


def test_a_second_session_that_fails_to_open_is_logged_and_the_first_serves(
    make_client: ClientFactory,
    active_version: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(self: OnnxPredictor, threads: int) -> bool:
        raise GraphError("out of memory for a second copy of the weights")

    monkeypatch.setattr(OnnxPredictor, "open_overlap_session", refuse)
    message = f"model version {active_version}: no second session for overlapping runs, they share one"
    with caplog.at_level(logging.WARNING, logger="service.runtime.model_loader"):
        client = make_client(runtime="onnx", inference_threads=2, torch_threads=1, onnx_threads=2)
        assert _wait_for(lambda: any(message in r.getMessage() for r in caplog.records))
    assert client.get("/models/active").json()["runtime"] == "onnx"
    _predict(client)


def test_auto_resolves_to_onnx_on_cpu_and_to_torch_on_cuda_without_onnxruntime_gpu() -> None:
    assert choose_runtime("auto", "cpu") == "onnx"
    gpu_build = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert choose_runtime("auto", "cuda") == ("onnx" if gpu_build else "torch")
    assert choose_runtime("torch", "cpu") == "torch"
    assert choose_runtime("onnx-int8", "cuda") == "onnx-int8"


def test_runtime_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUSION_RUNTIME", "ONNX-INT8")
    assert Settings(_env_file=None).runtime == "onnx-int8"  # type: ignore[call-arg]
    monkeypatch.setenv("FUSION_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="runtime"):
        Settings(_env_file=None)  # type: ignore[call-arg]
