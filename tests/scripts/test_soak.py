"""scripts/soak.py's arithmetic: the least-squares slope, the windows and the steady part of the run."""

from __future__ import annotations

import math

import pytest

from scripts.soak import Answer, Sample, slope_per_hour, steady_slopes, windows


def _sample(t_s: float, rss: float, fds: int = 40) -> Sample:
    return Sample(t_s, rss, fds, 7, rss / 2, fds // 2)


def test_slope_is_per_hour_and_a_bump_in_the_middle_is_not_a_trend() -> None:
    rising = [(60.0 * minute, 1000.0 + minute) for minute in range(30)]  # 1 MiB a minute
    bump = [(60.0 * minute, 1000.0 + (80.0 if minute == 15 else 0.0)) for minute in range(31)]

    assert slope_per_hour(rising) == pytest.approx(60.0)
    assert slope_per_hour(bump) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(slope_per_hour([(5.0, 1.0)]))
    assert math.isnan(slope_per_hour([(5.0, 1.0), (5.0, 2.0)]))


def test_answers_go_to_the_window_they_were_due_in_and_errors_stay_out_of_the_latencies() -> None:
    answers = [
        Answer(0.0, 0.010, ""),
        Answer(59.9, 0.030, ""),
        Answer(59.95, 5.0, "HTTP 503 overloaded"),
        Answer(60.0, 0.020, ""),
        Answer(130.0, 0.040, ""),
    ]
    samples = [_sample(0.0, 900), _sample(55.0, 910), _sample(65.0, 920), _sample(150.0, 930, 41)]

    rows = windows(answers, samples, window_s=60.0, duration_s=150.0)

    assert [(w.start_s, w.end_s, w.requests, w.errors) for w in rows] == [
        (0.0, 60.0, 3, 1),
        (60.0, 120.0, 1, 0),
        (120.0, 150.0, 1, 0),
    ]
    assert rows[0].error_kinds == {"HTTP 503 overloaded": 1}
    assert (rows[0].p50_ms, rows[0].p99_ms, rows[0].max_ms) == pytest.approx((10.0, 30.0, 30.0))
    # Each window shows its last sample; the one taken at the very end belongs to the last window.
    assert [w.server_rss_mib for w in rows] == [910, 920, 930]
    assert rows[2].server_fds == 41


def test_growth_before_the_steady_part_is_left_out_of_the_slopes() -> None:
    samples = [_sample(t, 500.0 if t < 100 else 1000.0) for t in range(0, 400, 10)]

    assert steady_slopes(samples, settle_s=0.0)["server_rss_mib"] > 1000
    assert steady_slopes(samples, settle_s=100.0) == pytest.approx(
        {"server_rss_mib": 0.0, "server_fds": 0.0, "worker_rss_mib": 0.0, "worker_fds": 0.0}
    )
