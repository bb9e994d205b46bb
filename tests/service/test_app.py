"""The app's lifespan: the device the inference plan is made for, and tear-down when a start step fails."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from fusion_testkit.factories import SettingsFactory
from service.app import create_app
from service.runtime.worker_supervisor import WorkerSupervisor


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_setting_without_a_cuda_device_fails_at_startup(make_settings: SettingsFactory) -> None:
    # The plan resolves the device as the model loader does, instead of quietly planning for the CPU.
    app = create_app(make_settings(device="cuda"))

    with pytest.raises(ValueError, match="cuda requested but no CUDA device"), TestClient(app):
        pass


def test_job_store_is_closed_when_the_worker_cannot_start(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_fork(self: WorkerSupervisor) -> None:
        raise OSError("fork failed")

    monkeypatch.setattr(WorkerSupervisor, "start", cannot_fork)
    settings = make_settings(start_worker=True)

    with pytest.raises(OSError, match="fork failed"), TestClient(create_app(settings)):
        pass

    # The WAL file goes away only once the job store's last (idle) connection is closed.
    assert (settings.data_dir / "jobs.sqlite3").is_file()
    assert not (settings.data_dir / "jobs.sqlite3-wal").exists()
