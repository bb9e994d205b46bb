"""ProgressBars fed by train's progress callback, and the progress line between processes."""

from __future__ import annotations

import pytest

from model.progress import Progress, ProgressBars, parse_progress_line, progress_line


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


def test_a_progress_line_reads_back_as_the_same_report() -> None:
    report = Progress(
        stage="evaluating", epoch=3, epochs=5, step=4, steps=4, loss=0.25, metrics={"accuracy": 1.0}
    )
    line = progress_line(report)
    assert "\n" not in line
    assert parse_progress_line(line) == report


def test_other_output_lines_are_not_progress() -> None:
    assert parse_progress_line("error: something broke") is None
    assert parse_progress_line('{"other": {}}') is None
