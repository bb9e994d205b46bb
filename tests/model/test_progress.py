"""ProgressBars: tqdm bars fed by train's progress callback."""

from __future__ import annotations

import pytest

from model.progress import ProgressBars
from model.training import Progress


def test_bars_follow_encoding_and_training_steps(capsys: pytest.CaptureFixture[str]) -> None:
    bars = ProgressBars(disable=False)
    bars(Progress(stage="encoding", epoch=0, epochs=2, step=5, steps=10))
    bars(Progress(stage="training", epoch=2, epochs=2, step=1, steps=3, loss=0.5))
    bars(Progress(stage="evaluating", epoch=2, epochs=2, step=0, steps=3, metrics={"accuracy": 0.75}))
    assert (bars.bars["encoding"].n, bars.bars["encoding"].total) == (5, 10)
    assert (bars.bars["training"].n, bars.bars["training"].total) == (4, 6)
    bars.close()
    assert "accuracy=0.750" in capsys.readouterr().err


def test_a_new_run_starts_a_new_training_bar() -> None:
    bars = ProgressBars(disable=False)
    bars(Progress(stage="training", epoch=1, epochs=2, step=3, steps=3, loss=0.5))
    first = bars.bars["training"]
    bars(Progress(stage="training", epoch=1, epochs=4, step=1, steps=3, loss=0.5))
    assert bars.bars["training"] is not first and bars.bars["training"].n == 1
    bars.close()
