"""Schedules, windows, durations and due times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyroll.schedule import (
    Cron,
    Schedule,
    ScheduleError,
    Window,
    add_months,
    from_iso,
    jitter_offset,
    next_due,
    parse_duration,
    to_iso,
)

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("30s", 30), ("10m", 600), ("12h", 43200), ("90d", 90 * 86400), ("36525d", 36525 * 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "5 minutes", "-1d", "1w", "d", "36526d", "9999999d", "99999999999999999999s"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_duration(text)


def test_calendar_words_count_from_the_last_rotation() -> None:
    assert Schedule.parse("daily").next_after(T0) == T0 + timedelta(days=1)
    assert Schedule.parse("weekly").next_after(T0) == T0 + timedelta(days=7)
    assert Schedule.parse("monthly").next_after(T0) == datetime(2026, 12, 28, 15, tzinfo=UTC)
    assert Schedule.parse("quarterly").next_after(T0) == datetime(2027, 2, 28, 15, tzinfo=UTC)
    assert Schedule.parse("yearly").next_after(T0) == datetime(2027, 11, 28, 15, tzinfo=UTC)
    assert Schedule.parse("90d").next_after(T0) == T0 + timedelta(days=90)
    assert Schedule.parse("5s").next_after(T0) == T0 + timedelta(seconds=5)


def test_month_arithmetic_clamps_the_day() -> None:
    assert add_months(datetime(2027, 1, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2028, 11, 30, tzinfo=UTC), 3) == datetime(2029, 2, 28, tzinfo=UTC)


def test_cron_expressions() -> None:
    quarterly = Schedule.parse("cron:0 3 1 */3 *")
    assert quarterly.next_after(T0) == datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    assert Cron.parse("30 2 * * sun").next_after(T0) == datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    assert Cron.parse("0 4 * * 1-5").next_after(T0) == datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # Monday
    assert Cron.parse("*/15 * * * *").next_after(T0) == T0 + timedelta(minutes=15)
    # Day-of-month OR day-of-week when both are restricted (classic cron).
    assert Cron.parse("0 0 13 * fri").next_after(T0) == datetime(2026, 12, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["cron:0 3 1 *", "cron:61 * * * *", "cron:* * 32 * *", "fortnightly", "cron:0 0 30 2 *", "9999999d"]
)
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(text).next_after(T0)


def test_windows() -> None:
    window = Window.parse("Sun 02:00-05:00")
    assert window is not None
    assert not window.contains(T0)
    assert window.next_open(T0) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    inside = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert window.next_open(inside) == inside
    overnight = Window.parse("Fri 23:00-02:00")
    assert overnight is not None and overnight.contains(datetime(2026, 11, 28, 1, 0, tzinfo=UTC))  # Sat 01:00
    weekdays = Window.parse("Mon-Fri 01:00-04:00")
    assert weekdays is not None and weekdays.next_open(T0) == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert Window.parse("") is None
    for bad in ("Someday 01:00-02:00", "25:00-26:00", "01:00-01:00", "Sun"):
        with pytest.raises(ScheduleError):
            Window.parse(bad)


def test_jitter_is_bounded_and_stable_across_restarts() -> None:
    jitter = timedelta(hours=2)
    offsets = {jitter_offset(f"s{i}", T0, jitter) for i in range(200)}
    assert all(timedelta(0) <= o < jitter for o in offsets)
    assert len(offsets) > 150  # spread out
    assert jitter_offset("s1", T0, jitter) == jitter_offset("s1", T0, jitter)
    assert jitter_offset("s1", T0, timedelta(0)) == timedelta(0)


def test_next_due_combines_schedule_jitter_and_window() -> None:
    window = Window.parse("Sun 02:00-05:00")
    due = next_due("x", T0, Schedule.parse("weekly"), window, timedelta(0))
    assert due == datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def test_iso_round_trip() -> None:
    assert to_iso(T0) == "2026-11-28T15:00:00Z"
    assert from_iso("2026-11-28T15:00:00Z") == T0
    assert from_iso("2026-11-28T15:00:00") == T0


def test_jitter_spreads_secrets_over_their_window() -> None:
    window = Window.parse("Sun 02:00-05:00")
    dues = {next_due(f"s{i}", T0, Schedule.parse("weekly"), window, timedelta(hours=6)) for i in range(50)}
    assert len(dues) > 40, "not all at the window's first minute"
    assert all(window.contains(due) for due in dues)
    assert min(dues) >= datetime(2026, 12, 6, 2, 0, tzinfo=UTC) and max(dues) < datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
    overnight = Window.parse("Sat 23:00-01:00")
    assert overnight is not None and overnight.remaining(datetime(2026, 12, 5, 23, 30, tzinfo=UTC)) == timedelta(
        minutes=89, seconds=59
    )
