"""The first run's demo, on its real path: production encoders, the shipped recipe, >= 0.95 on every seed.

Slow by nature: the production image encoder embeds the 750 demo pictures once (cached for the other
seeds), and each seed fine-tunes MiniLM's top two layers on the captions; see the README for the measured
run time.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.config import TrainConfig
from service.__main__ import bootstrap_demo
from service.runtime.model_store import ModelStore
from service.settings import Settings

pytestmark = pytest.mark.slow


def _settings(root: Path, models: str) -> Settings:
    return Settings(_env_file=None, model_dir=root / models, data_dir=root / "data", device="cpu")  # type: ignore[call-arg]


def _accuracies(store: ModelStore) -> dict[str, float]:
    (entry,) = store.list_versions()
    return {mode: entry.metrics[mode]["accuracy"] for mode in ("fusion", "image_only", "text_only")}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory whose feature cache the seeds share (one thread: the encoders are the cost)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path_factory.mktemp("demo-recipe")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first_run(demo_root: Path) -> str:
    """What `python -m service --bootstrap-demo` prints on an empty store (the default seed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bootstrap_demo(_settings(demo_root, "models"), show_progress=False) is not None
    return out.getvalue()


def test_the_first_run_learns_the_demo_and_fusion_beats_each_modality(
    first_run: str, demo_root: Path
) -> None:
    accuracy = _accuracies(ModelStore(demo_root / "models"))
    assert accuracy["fusion"] >= 0.95
    assert accuracy["fusion"] >= max(accuracy["image_only"], accuracy["text_only"]) + 0.05
    printed = re.search(
        r"validation accuracy (\d\.\d{3}); image alone (\d\.\d{3}), text alone (\d\.\d{3})", first_run
    )
    assert printed is not None and float(printed[1]) == pytest.approx(accuracy["fusion"], abs=5e-4)


def test_the_first_run_prints_a_request_to_try_and_its_answer(first_run: str, demo_root: Path) -> None:
    lines = first_run.splitlines()
    (command,) = [line for line in lines if line.startswith("try it: curl -s -F image=@")]
    image = command.split("image=@", 1)[1].split()[0]
    assert (demo_root / "data" / "datasets" / "demo" / "images" / Path(image).name).is_file()
    answer = next(line for line in lines if line.startswith("  answer: "))
    assert answer.startswith("  answer: positive (negative 0.")  # the example is a positive sample
    assert any(line.startswith("  image alone: ") for line in lines)
    assert any(line.startswith("  text alone: positive") for line in lines)  # its photo is neutral grey


@pytest.mark.parametrize("seed", [1, 2])
def test_the_recipe_learns_the_demo_on_other_seeds(first_run: str, demo_root: Path, seed: int) -> None:
    settings = _settings(demo_root, f"models-seed{seed}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bootstrap_demo(settings, train_config=TrainConfig(device="cpu", seed=seed), show_progress=False)
    assert _accuracies(ModelStore(settings.model_dir))["fusion"] >= 0.95
