"""Push calendar: configured dates, published dates, third-Thursday fallback, deadlines, next push."""

from __future__ import annotations

import datetime as dt

from shared.calendar import PUBLISHED_PUSH_DATES, PushCalendar, third_thursday

D = dt.date.fromisoformat


def test_third_thursday() -> None:
    assert third_thursday(2023, 2) == D("2023-02-16")
    assert third_thursday(2027, 2) == D("2027-02-18")
    assert third_thursday(2027, 6) == D("2027-06-17")
    assert third_thursday(2027, 10) == D("2027-10-21")
    for year in range(2020, 2040):
        for month in (2, 6, 10):
            day = third_thursday(year, month)
            assert day.weekday() == 3 and 15 <= day.day <= 21


def test_published_dates_win_over_the_rule_where_they_break_it() -> None:
    cal = PushCalendar()
    dates_2024 = [p.date for p in cal.dates(2024)]
    assert D("2024-06-13") in dates_2024  # a 2nd Thursday
    assert third_thursday(2024, 6) not in dates_2024
    assert [p.date for p in cal.dates(2022)] == [D("2022-06-23"), D("2022-10-20")]
    assert {p.source for p in cal.dates(2025)} == {"published"}
    assert len([d for d in PUBLISHED_PUSH_DATES if d.year == 2026]) == 3


def test_rule_is_the_fallback_for_years_without_dates() -> None:
    pushes = PushCalendar().dates(2030)
    assert [p.date for p in pushes] == [third_thursday(2030, m) for m in (2, 6, 10)]
    assert {p.source for p in pushes} == {"rule"}


def test_configured_dates_replace_that_year_only() -> None:
    cal = PushCalendar([D("2026-03-05"), D("2026-09-10")])
    assert [(p.date, p.source) for p in cal.dates(2026)] == [
        (D("2026-03-05"), "configured"),
        (D("2026-09-10"), "configured"),
    ]
    assert cal.dates(2025)[0].date == D("2025-02-13")
    assert cal.is_push_date(D("2026-03-05")) and not cal.is_push_date(D("2026-02-19"))


def test_deadlines() -> None:
    push = PushCalendar().next_push(D("2025-10-01"))
    assert push.date == D("2025-10-16")
    assert push.submission_deadline == D("2025-09-26")
    assert push.support_stop == D("2025-10-09")


def test_next_push_is_on_or_after_today_and_crosses_years() -> None:
    cal = PushCalendar()
    assert cal.next_push(D("2025-10-16")).date == D("2025-10-16")
    assert cal.next_push(D("2025-10-17")).date == D("2026-02-19")
    assert cal.next_push(D("2026-10-16")).date == third_thursday(2027, 2)
    assert cal.latest_on_or_before(D("2026-01-05")).date == D("2025-10-16")  # type: ignore[union-attr]


def test_a_date_off_the_calendar_is_named_with_the_push_dates_around_it() -> None:
    cal = PushCalendar()
    assert cal.not_a_push_date(D("2025-06-12")) is None
    message = cal.not_a_push_date(D("2025-06-19"))  # the third Thursday, but not the published date
    assert message is not None
    assert message.startswith("2025-06-19 is not a push date") and "2025-06-12 or 2025-10-16" in message
    assert "2026-10-15 or 2027-02-" in (cal.not_a_push_date(D("2026-12-01")) or "")
