"""``python -m service``: argument handling and the --bootstrap-demo training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fusion_testkit.factories import tiny_model_config
from fusion_testkit.processes import free_port
from model.config import TrainConfig
from service.__main__ import bootstrap_demo, main
from service.runtime.model_store import ModelStore
from service.settings import Settings


def test_bootstrap_demo_trains_saves_and_activates(
    make_settings: Callable[..., Settings], store: ModelStore
) -> None:
    settings = make_settings(device="cpu")
    version = bootstrap_demo(
        settings,
        model_config=tiny_model_config(labels=()),
        train_config=TrainConfig(epochs=1, batch_size=8, device="cpu"),
        n_per_class=4,
        show_progress=False,
    )
    assert version is not None
    assert store.active_version() == version
    (entry,) = store.list_versions()
    assert entry.meta is not None and entry.meta["labels"] == ["negative", "positive"]
    assert "fusion" in entry.metrics
    assert (settings.data_dir / "datasets" / "demo" / "train.jsonl").is_file()


def test_bootstrap_demo_keeps_an_existing_active_version(
    make_settings: Callable[..., Settings], active_version: str, store: ModelStore
) -> None:
    assert bootstrap_demo(make_settings(), show_progress=False) is None
    assert store.active_version() == active_version


def test_invalid_setting_exits_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUSION_MAX_BATCH_SIZE", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "8123"])
    assert exit_info.value.code == 2
    assert "max_batch_size" in capsys.readouterr().err


def test_unreachable_job_database_exits_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    monkeypatch.setenv("FUSION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FUSION_JOB_DB_URL", f"postgresql://fusion:s3cret@127.0.0.1:{free_port()}/fusion")
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "8123"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "FUSION_JOB_DB_URL" in err and "s3cret" not in err


def test_bad_job_database_url_fails_before_the_demo_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FUSION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FUSION_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FUSION_JOB_DB_URL", "mysql://fusion@db.example/fusion")
    with pytest.raises(SystemExit) as exit_info:
        main(["--bootstrap-demo"])
    assert exit_info.value.code == 2
    assert "FUSION_JOB_DB_URL" in capsys.readouterr().err
    assert not (tmp_path / "data" / "datasets").exists()  # the demo dataset was not even written
