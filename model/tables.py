"""Plain-text tables of classification reports and cross-validation summaries (the CLI prints them)."""

from __future__ import annotations

from typing import Any

from model.config import METRICS, MODES


def metrics_table(metrics: dict[str, dict | None]) -> str:
    """Accuracy / macro F1 / weighted F1 per mode (fusion, image-only, text-only)."""
    lines = [f"{'':<12}" + "".join(f"{name:>{len(name) + 2}}" for name in METRICS)]
    for mode, report in metrics.items():
        if report is None:
            continue
        cells = "".join(f"{report[name]:>{len(name) + 2}.3f}" for name in METRICS)
        lines.append(f"{mode.replace('_', '-'):<12}{cells}")
    return "\n".join(lines)


def cv_table(summary: dict[str, Any]) -> str:
    """Per fold and mean (std) of the held-out folds' scalar metrics, per mode."""
    lines = [
        f"{summary['k']}-fold cross-validation on held-out folds (best epochs {summary['best_epochs']}):"
    ]
    for mode in MODES:
        mean, std = summary["mean"][mode], summary["std"][mode]
        if mean is None:
            continue
        lines.append(f"{mode.replace('_', '-')}:")
        for i, fold in enumerate(summary["folds"], start=1):
            lines.append(f"  fold {i:<3}" + "  ".join(f"{key} {fold[mode][key]:.3f}" for key in METRICS))
        lines.append("  mean    " + "  ".join(f"{key} {mean[key]:.3f} ({std[key]:.3f})" for key in METRICS))
    return "\n".join(lines)
