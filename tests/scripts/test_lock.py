"""scripts/lock.py: the committed locks pin every requirement of pyproject.toml within its range."""

from __future__ import annotations

from scripts.lock import canonical, lock_lines, stale_pins


def test_every_pyproject_requirement_is_pinned_within_range() -> None:
    assert stale_pins() == []


def test_lock_lines_are_sorted_pins_without_the_project() -> None:
    pins = {"zeta": "1.0", "fusion-service": "0.1.0", canonical("Alpha_Beta.x"): "2.0"}
    assert lock_lines(pins) == ["alpha-beta-x==2.0", "zeta==1.0"]
