"""``python -m service``: argument handling and the --bootstrap-demo training."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from model.config import TrainConfig
from service.__main__ import bootstrap_demo, main
from service.runtime.model_store import ModelStore
from service.settings import Settings
from tests.factories import tiny_model_config


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
    assert entry.meta is not None and entry.meta["labels"] == ["match", "mismatch"]
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
