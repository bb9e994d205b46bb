"""Training progress: the `Progress` report, the JSON line it travels as, and terminal progress bars.

`train` reports through a `ProgressCallback`. Between processes (the CLI's `--progress json`, read by
the service's worker) a report is one stdout line `{"progress": {...}}` holding the fields of `Progress`;
`progress_line` writes it and `parse_progress_line` reads it back, so both sides share one format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LINE_KEY = "progress"
_LINE_START = '{"' + _LINE_KEY + '"'


@dataclass
class Progress:
    """A progress report: `fraction` (0..1) is of the current stage; fold/folds are set by cross-validation.

    Between processes it travels as one line: `progress_line` / `parse_progress_line`.
    """

    stage: str  # "encoding" | "training" | "evaluating"
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    metrics: dict | None = None
    eta_s: float | None = None
    fraction: float = 0.0
    fold: int = 0
    folds: int = 0


ProgressCallback = Callable[[Progress], None]


def progress_line(progress: Progress) -> str:
    """The report as one JSON line `{"progress": {...}}` (no newline)."""
    return json.dumps({_LINE_KEY: dataclasses.asdict(progress)})


def parse_progress_line(line: str) -> Progress | None:
    """The report a `progress_line` holds; None for any other line. Malformed JSON raises ValueError."""
    if not line.startswith(_LINE_START):
        return None
    return Progress(**json.loads(line)[_LINE_KEY])


class ProgressBars:
    """tqdm bars for training progress: one for encoding, one for the epochs (shown on a terminal only).

    An instance is an `on_progress` callback; `disable=True` hides the bars, None shows them on a terminal.
    """

    def __init__(self, *, disable: bool | None = None) -> None:
        self.disable = disable
        self.bars: dict[str, Any] = {}

    def __call__(self, progress: Progress) -> None:
        """Show one progress report."""
        from tqdm import tqdm

        if progress.stage == "encoding":
            bar = self.bars.get("encoding") or self.bars.setdefault(
                "encoding", tqdm(total=progress.steps, desc="encoding", unit="item", disable=self.disable)
            )
            bar.update(progress.step - bar.n)
            return
        total = progress.epochs * progress.steps
        bar = self.bars.get("training")
        if bar is None or bar.total != total:  # a new run (e.g. the next fold)
            if bar is not None:
                bar.close()
            bar = self.bars["training"] = tqdm(
                total=total, desc="training", unit="step", disable=self.disable
            )
        if progress.stage == "training":
            bar.update((progress.epoch - 1) * progress.steps + progress.step - bar.n)
            bar.set_postfix(epoch=progress.epoch, loss=f"{progress.loss:.4f}", refresh=False)
        elif progress.metrics:
            bar.set_postfix(epoch=progress.epoch, **{k: f"{v:.3f}" for k, v in progress.metrics.items()})

    def close(self) -> None:
        """Finish every bar."""
        for bar in self.bars.values():
            bar.close()
