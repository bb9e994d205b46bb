"""The promotion policy: whether a job's new version goes live, decided from plain values."""

from __future__ import annotations

from typing import Any


def recorded_value(metrics: dict[str, Any], metric: str) -> Any:
    """The validation `metric` a version recorded: its fusion report's, or a flat one (hand-made)."""
    fusion = metrics.get("fusion")
    return fusion.get(metric) if isinstance(fusion, dict) else metrics.get(metric)


def decide_promotion(
    policy: str,
    metric: str,
    value: float,
    *,
    active: str | None,
    active_metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    """The decision for a new version whose `metric` is `value`: promoted or not, and why.

    `active` is the version the active pointer names (None: none); `active_metrics` the metrics that
    version recorded, None when it is not in the store.
    """
    decision: dict[str, Any] = {
        "policy": policy,
        "metric": metric,
        "value": value,
        "previous_version": active,
    }
    if policy == "never":
        return {**decision, "promoted": False, "reason": "not promoted (promote is never)"}
    has_active = active is not None and active_metrics is not None
    if policy == "if_better" and active_metrics is not None:
        previous = recorded_value(active_metrics, metric)
        decision["previous_value"] = previous
        if not isinstance(previous, int | float):
            reason = f"not promoted: active version {active} has no recorded {metric} to compare with"
            return {**decision, "promoted": False, "reason": reason}
        if value <= previous:
            reason = f"not promoted: {metric} {value:.4f} does not beat active {active} ({previous:.4f})"
            return {**decision, "promoted": False, "reason": reason}
    if policy == "always":
        reason = "promoted (promote is always)"
    elif not has_active:
        reason = "promoted (no active model)"
    else:
        reason = f"promoted ({metric} beats active {active})"
    return {**decision, "promoted": True, "reason": reason}
