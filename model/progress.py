"""Terminal progress bars for `train`'s progress callback (used by the CLI and the demo bootstrap)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.training import Progress


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
