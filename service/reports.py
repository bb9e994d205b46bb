"""A job's training report as a PNG: loss and validation-metric curves, and the confusion matrix."""

from __future__ import annotations

import io
from typing import Any

from model.config import METRICS
from service.runtime.job_store import Job


def render_job_report(job: Job) -> bytes:
    """PNG bytes of the job's per-epoch curves and, once it has finished, its validation confusion matrix."""
    # Imported here: matplotlib is slow to import and only this route needs it. Figure + the Agg canvas
    # (rather than pyplot) keeps no global state, so reports can render in several threads at once.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion, labels = _confusion(job.metrics)
    panels = 2 + (confusion is not None)
    figure = Figure(figsize=(5.0 * panels, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    best_epoch = (job.metrics or {}).get("best_epoch")
    _plot_loss(axes[0], job.history)
    _plot_metrics(axes[1], job.history, best_epoch)
    if confusion is not None:
        _plot_confusion(axes[2], confusion, labels)
    figure.suptitle(
        f"job {job.id[:12]} on {job.dataset}: {job.status.value}"
        + (f", version {job.model_version}" if job.model_version else "")
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plot_loss(ax: Any, history: list[dict[str, Any]]) -> None:
    epochs = [entry["epoch"] for entry in history if entry.get("loss") is not None]
    losses = [entry["loss"] for entry in history if entry.get("loss") is not None]
    ax.plot(epochs, losses, marker="o", color="tab:red")
    ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    _integer_epochs(ax)


def _plot_metrics(ax: Any, history: list[dict[str, Any]], best_epoch: int | None) -> None:
    scored = [entry for entry in history if isinstance(entry.get("val"), dict)]
    for name in METRICS:
        points = [(entry["epoch"], entry["val"][name]) for entry in scored if name in entry["val"]]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
    ax.set(title="validation metrics", xlabel="epoch", ylim=(0.0, 1.02))
    _integer_epochs(ax)
    if scored:
        ax.legend(loc="lower right")


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _confusion(metrics: dict[str, Any] | None) -> tuple[list[list[int]] | None, list[str]]:
    report = (metrics or {}).get("fusion")
    if not isinstance(report, dict) or "confusion_matrix" not in report:
        return None, []
    labels = (metrics or {}).get("labels") or list(report.get("per_class", {}))
    return report["confusion_matrix"], [str(label) for label in labels]


def _plot_confusion(ax: Any, matrix: list[list[int]], labels: list[str]) -> None:
    n = len(matrix)
    peak = max((max(row) for row in matrix), default=0)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(peak, 1))
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(
                j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
            )
    ticks = list(range(n))
    ax.set_xticks(ticks, labels[:n], rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(ticks, labels[:n])
    ax.set(title="confusion matrix (validation)", xlabel="predicted", ylabel="true")
