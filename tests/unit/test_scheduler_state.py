"""Pure scheduler rules: forward-only states, restart planning, automatic start."""

from __future__ import annotations

import datetime as dt

import pytest

from services.scheduler.state import ExistingJob, auto_start_due, may_move, plan_start
from shared.calendar import PushCalendar
from shared.db import COMPLETED, EXTRACTING, FAILED, LISTED, NOTIFYING, UPLOADING
from shared.extract_list import ListActivity, PlannedJob
from shared.messages import ExtractKey

UTC = dt.UTC


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (LISTED, EXTRACTING, True),
        (EXTRACTING, UPLOADING, True),
        (EXTRACTING, COMPLETED, True),  # project.notified overtook extract.created
        (UPLOADING, NOTIFYING, True),
        (NOTIFYING, UPLOADING, False),  # a late extract.created
        (UPLOADING, UPLOADING, False),  # the same event twice
        (NOTIFYING, FAILED, True),
        (COMPLETED, FAILED, False),
        (FAILED, COMPLETED, False),
        (FAILED, UPLOADING, False),
    ],
)
def test_states_only_move_forward(current: str, target: str, allowed: bool) -> None:
    assert may_move(current, target) is allowed


def planned(code: str) -> PlannedJob:
    return PlannedJob(key=ExtractKey(code=code, year=2022, type="t"), node="OTN", list_row_ids=[1])


def test_restart_plan() -> None:
    existing = {
        ("DONE", 2022, "t"): ExistingJob(1, COMPLETED, (1,)),
        ("BAD", 2022, "t"): ExistingJob(2, FAILED),
        ("BUSY", 2022, "t"): ExistingJob(3, UPLOADING),
        ("LATE", 2022, "t"): ExistingJob(4, COMPLETED, (7,)),  # made before list row 1 was added
    }
    plan = plan_start(existing, [planned(c) for c in ("DONE", "BAD", "BUSY", "NEW", "LATE")])
    assert [j.key.code for j in plan.new] == ["NEW"]
    assert [(e.id, j.key.code) for e, j in plan.retry] == [(2, "BAD"), (4, "LATE")]
    assert [e.id for e, _ in plan.in_flight] == [3]
    assert [e.id for e, _ in plan.completed] == [1]


PUSH = dt.date(2025, 10, 16)
CAL = PushCalendar()


def activity(pending: int, added: dt.datetime | None) -> dict[dt.date, ListActivity]:
    return {PUSH: ListActivity(pending=pending, last_added=added)}


def test_auto_start_waits_for_the_date_rows_and_quiet() -> None:
    added = dt.datetime(2025, 10, 16, 8, tzinfo=UTC)
    day_before = dt.datetime(2025, 10, 15, 23, tzinfo=UTC)
    assert auto_start_due(day_before.date(), day_before, CAL, activity(3, added), set(), 3600) is None
    soon = dt.datetime(2025, 10, 16, 8, 30, tzinfo=UTC)
    assert auto_start_due(soon.date(), soon, CAL, activity(3, added), set(), 3600) is None
    later = dt.datetime(2025, 10, 16, 9, 0, 1, tzinfo=UTC)
    assert auto_start_due(later.date(), later, CAL, activity(3, added), set(), 3600) == PUSH
    assert auto_start_due(later.date(), later, CAL, activity(0, added), set(), 3600) is None
    assert auto_start_due(later.date(), later, CAL, activity(3, added), {PUSH}, 3600) is None
    assert auto_start_due(later.date(), later, CAL, {}, set(), 3600) is None
    # days after the push date, the push still starts (e.g. the scheduler was down on the day)
    week = dt.datetime(2025, 10, 23, tzinfo=UTC)
    assert auto_start_due(week.date(), week, CAL, activity(3, added), set(), 3600) == PUSH


def test_failed_jobs_the_list_no_longer_names_are_retried_and_only_they() -> None:
    from services.scheduler.state import ExistingJob, plan_failed_again, plan_start

    existing = {
        ("NSBS", 2024, "t"): ExistingJob(1, "completed", (1,), "OTN"),
        ("HFX", 2023, "q"): ExistingJob(2, "failed", (2,), "OTN"),
        ("SERC1", 2025, "u"): ExistingJob(3, "uploading", (3,), "ACT"),
    }
    plan = plan_failed_again(plan_start(existing, []), existing)
    assert [(found.id, job.key.label, job.node) for found, job in plan.retry] == [(2, "HFX,2023,q", "OTN")]
    assert plan.new == [] and plan.in_flight == [] and plan.completed == []
