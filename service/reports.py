"""A job's training report as a PNG: loss and validation-metric curves, the confusion matrix and, for a
cross-validated job, the per-fold metrics with their mean and the per-class F1 over the folds."""

from __future__ import annotations

import io
from typing import Any

from model.config import METRICS
from service.runtime.job_record import Job


def render_job_report(job: Job) -> bytes:
    """PNG bytes of the per-epoch curves and, once the job finished, its confusion matrix and CV results."""
    # Imported here: matplotlib is slow to import and only this route needs it. Figure + the Agg canvas
    # (rather than pyplot) keeps no global state, so reports can render in several threads at once.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = job.metrics or {}
    confusion, labels = _confusion(metrics)
    cv = metrics.get("cv") if isinstance(metrics.get("cv"), dict) else None
    panels = 2 + (confusion is not None) + 2 * (cv is not None)
    figure = Figure(figsize=(5.0 * panels, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels, squeeze=False)[0])
    _plot_loss(axes.pop(0), job.history)
    _plot_metrics(axes.pop(0), job.history, metrics.get("best_epoch"))
    if confusion is not None:
        title = "confusion matrix (held-out folds)" if cv is not None else "confusion matrix (validation)"
        _plot_confusion(axes.pop(0), confusion, labels, title)
    if cv is not None:
        _plot_folds(axes.pop(0), cv)
        _plot_per_class(axes.pop(0), cv)
    figure.suptitle(
        f"job {job.id[:12]} on {job.dataset}: {job.status.value}"
        + (f", version {job.model_version}" if job.model_version else "")
        + _test_summary(metrics)
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _test_summary(metrics: dict[str, Any]) -> str:
    test = metrics.get("test")
    fusion = test.get("fusion") if isinstance(test, dict) else None
    if not isinstance(fusion, dict):
        return ""
    return "\ntest split: " + ", ".join(f"{name} {fusion[name]:.3f}" for name in METRICS if name in fusion)


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


def _confusion(metrics: dict[str, Any]) -> tuple[list[list[int]] | None, list[str]]:
    report = metrics.get("fusion")
    if not isinstance(report, dict) or not report.get("confusion_matrix"):
        return None, []
    labels = metrics.get("labels") or list(report.get("per_class", {}))
    return report["confusion_matrix"], [str(label) for label in labels]


def _plot_confusion(ax: Any, matrix: list[list[int]], labels: list[str], title: str) -> None:
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
    ax.set(title=title, xlabel="predicted", ylabel="true")


def _plot_folds(ax: Any, cv: dict[str, Any]) -> None:
    """Fusion metrics per held-out fold as grouped bars, each metric's mean over the folds as a line."""
    folds = [fold.get("fusion") or {} for fold in cv.get("folds", [])]
    mean = (cv.get("mean") or {}).get("fusion") or {}
    width = 0.8 / len(METRICS)
    for i, name in enumerate(METRICS):
        positions = [f + 1 + (i - (len(METRICS) - 1) / 2) * width for f in range(len(folds))]
        bars = ax.bar(positions, [fold.get(name, 0.0) for fold in folds], width, label=name)
        if name in mean:
            ax.axhline(mean[name], color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1)
    ax.set(title=f"{len(folds)}-fold CV (fusion; dashed: mean)", xlabel="held-out fold", ylim=(0.0, 1.02))
    ax.set_xticks(range(1, len(folds) + 1))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")


def _plot_per_class(ax: Any, cv: dict[str, Any]) -> None:
    """Per-class precision, recall and F1 (fusion), mean over the folds with their std as error bars."""
    mean = ((cv.get("mean") or {}).get("fusion") or {}).get("per_class") or {}
    std = ((cv.get("std") or {}).get("fusion") or {}).get("per_class") or {}
    labels = list(mean)
    keys = ("precision", "recall", "f1")
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        positions = [c + (i - (len(keys) - 1) / 2) * width for c in range(len(labels))]
        values = [mean[label][key] for label in labels]
        errors = [std.get(label, {}).get(key, 0.0) for label in labels]
        ax.bar(positions, values, width, yerr=errors, capsize=3, label=key)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    ax.set(title="per class over the folds (fusion, mean +/- std)", ylim=(0.0, 1.05))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")
