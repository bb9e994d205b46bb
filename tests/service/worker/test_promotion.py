"""The promotion policy as a pure function: never, always, if_better against the active version."""

from __future__ import annotations

from service.worker.promotion import decide_promotion


def test_never_keeps_the_active_version() -> None:
    decision = decide_promotion("never", "accuracy", 0.9, active=None, active_metrics=None)
    assert not decision["promoted"] and decision["reason"] == "not promoted (promote is never)"


def test_always_promotes_a_worse_model() -> None:
    recorded = {"fusion": {"accuracy": 0.99}}
    decision = decide_promotion("always", "accuracy", 0.5, active="v1", active_metrics=recorded)
    assert decision["promoted"] and decision["previous_version"] == "v1"


def test_if_better_promotes_when_nothing_is_active() -> None:
    decision = decide_promotion("if_better", "accuracy", 0.5, active=None, active_metrics=None)
    assert decision["promoted"] and decision["reason"] == "promoted (no active model)"


def test_if_better_promotes_when_the_active_pointer_names_a_missing_version() -> None:
    decision = decide_promotion("if_better", "accuracy", 0.5, active="gone", active_metrics=None)
    assert decision["promoted"] and decision["previous_version"] == "gone"


def test_if_better_needs_a_strictly_higher_value() -> None:
    recorded = {"fusion": {"macro_f1": 0.7}}
    tie = decide_promotion("if_better", "macro_f1", 0.7, active="v1", active_metrics=recorded)
    better = decide_promotion("if_better", "macro_f1", 0.71, active="v1", active_metrics=recorded)
    assert not tie["promoted"] and "does not beat" in tie["reason"] and tie["previous_value"] == 0.7
    assert better["promoted"] and better["reason"] == "promoted (macro_f1 beats active v1)"


def test_if_better_reads_a_flat_hand_made_record() -> None:
    decision = decide_promotion("if_better", "accuracy", 0.6, active="v1", active_metrics={"accuracy": 0.8})
    assert not decision["promoted"] and decision["previous_value"] == 0.8


def test_if_better_refuses_when_the_active_version_recorded_no_such_metric() -> None:
    decision = decide_promotion("if_better", "weighted_f1", 0.6, active="v1", active_metrics={"fusion": {}})
    assert not decision["promoted"] and "no recorded weighted_f1" in decision["reason"]
