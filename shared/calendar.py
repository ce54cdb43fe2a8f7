"""The push calendar: configured push dates, else OTN's published ones, else the third-Thursday rule.

Push date = cut-off for data loading. The rule (third Thursday of February, June and October) is only the
fallback for years without configured or published dates, because the published dates break it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PUBLISHED_PUSH_DATES: tuple[dt.date, ...] = tuple(
    dt.date.fromisoformat(d)
    for d in (
        "2022-06-23",
        "2022-10-20",
        "2023-02-16",
        "2023-06-15",
        "2023-10-19",
        "2024-02-15",
        "2024-06-13",
        "2024-10-17",
        "2025-02-13",
        "2025-06-12",
        "2025-10-16",
        "2026-02-19",
        "2026-06-18",
        "2026-10-15",
    )
)
PUSH_MONTHS = (2, 6, 10)
SUBMISSION_DEADLINE_DAYS = 20
SUPPORT_STOP_DAYS = 7


def third_thursday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    to_thursday = (3 - first.weekday()) % 7
    return first + dt.timedelta(days=to_thursday + 14)


def rule_dates(year: int) -> list[dt.date]:
    return [third_thursday(year, month) for month in PUSH_MONTHS]


@dataclass(frozen=True)
class PushDate:
    date: dt.date
    source: str  # configured | published | rule

    @property
    def submission_deadline(self) -> dt.date:
        return self.date - dt.timedelta(days=SUBMISSION_DEADLINE_DAYS)

    @property
    def support_stop(self) -> dt.date:
        return self.date - dt.timedelta(days=SUPPORT_STOP_DAYS)


class PushCalendar:
    """Push dates by year. Configured dates replace the published ones for the years they cover."""

    def __init__(self, configured: list[dt.date] | tuple[dt.date, ...] = ()) -> None:
        self.configured = sorted(set(configured))

    def dates(self, year: int) -> list[PushDate]:
        configured = [d for d in self.configured if d.year == year]
        if configured:
            return [PushDate(d, "configured") for d in configured]
        published = [d for d in PUBLISHED_PUSH_DATES if d.year == year]
        if published:
            return [PushDate(d, "published") for d in published]
        return [PushDate(d, "rule") for d in rule_dates(year)]

    def is_push_date(self, day: dt.date) -> bool:
        return any(p.date == day for p in self.dates(day.year))

    def next_push(self, today: dt.date) -> PushDate:
        """The first push date on or after `today`."""
        for year in (today.year, today.year + 1):
            for push in self.dates(year):
                if push.date >= today:
                    return push
        return self.dates(today.year + 2)[0]  # pragma: no cover - every year has three dates

    def latest_on_or_before(self, today: dt.date) -> PushDate | None:
        """The most recent push date not after `today` (this year or last)."""
        candidates = [p for year in (today.year - 1, today.year) for p in self.dates(year) if p.date <= today]
        return max(candidates, key=lambda p: p.date) if candidates else None

    def around(self, day: dt.date) -> tuple[PushDate | None, PushDate]:
        """The push dates just before and just after `day` (for saying what a non-push date is near)."""
        return self.latest_on_or_before(day - dt.timedelta(days=1)), self.next_push(
            day + dt.timedelta(days=1)
        )

    def not_a_push_date(self, day: dt.date) -> str | None:
        """None for a push date; else a sentence naming the day and the push dates around it."""
        if self.is_push_date(day):
            return None
        before, after = self.around(day)
        near = " or ".join(p.date.isoformat() for p in (before, after) if p is not None)
        return f"{day.isoformat()} is not a push date (nearest: {near}; see `otn-push calendar`)"
