"""Pure scheduler rules: forward-only job states, what a (re)start does, when a push starts by itself."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shared.calendar import PushCalendar
from shared.db import COMPLETED, EXTRACTING, FAILED, LISTED, NOTIFYING, UPLOADING
from shared.extract_list import ListActivity, PlannedJob
from shared.messages import ExtractKey

RANK = {LISTED: 0, EXTRACTING: 1, UPLOADING: 2, NOTIFYING: 3, COMPLETED: 4, FAILED: 4}
TERMINAL = frozenset({COMPLETED, FAILED})


def may_move(current: str, target: str) -> bool:
    """Events may come late or twice: a job only moves forward, and never out of completed/failed."""
    if current in TERMINAL:
        return False
    return RANK[target] > RANK[current]


JobKey = tuple[str, int, str]


@dataclass(frozen=True)
class ExistingJob:
    id: int
    state: str
    list_row_ids: tuple[int, ...] = ()
    node: str = ""


@dataclass
class StartPlan:
    """What starting a push does to its jobs: new ones, failed ones re-requested, the rest left alone."""

    new: list[PlannedJob] = field(default_factory=list)
    retry: list[tuple[ExistingJob, PlannedJob]] = field(default_factory=list)
    in_flight: list[tuple[ExistingJob, PlannedJob]] = field(default_factory=list)
    completed: list[tuple[ExistingJob, PlannedJob]] = field(default_factory=list)


def plan_start(existing: dict[JobKey, ExistingJob], planned: list[PlannedJob]) -> StartPlan:
    plan = StartPlan()
    for job in planned:
        key = (job.key.code, job.key.year, job.key.type)
        found = existing.get(key)
        if found is None:
            plan.new.append(job)
        elif found.state == FAILED:
            plan.retry.append((found, job))
        elif found.state == COMPLETED:
            if any(i not in found.list_row_ids for i in job.list_row_ids):
                # rows added after it was made may come with new data: build it again rather than
                # complete them with files made before they existed
                plan.retry.append((found, job))
            else:
                plan.completed.append((found, job))
        else:
            plan.in_flight.append((found, job))
    return plan


def _planned_keys(plan: StartPlan) -> set[JobKey]:
    return {(j.key.code, j.key.year, j.key.type) for j in plan.new} | {
        (j.key.code, j.key.year, j.key.type) for _, j in (*plan.retry, *plan.in_flight, *plan.completed)
    }


def _again(key: JobKey, found: ExistingJob) -> tuple[ExistingJob, PlannedJob]:
    code, year, type_code = key
    extract = ExtractKey(code=code, year=year, type=type_code)  # type: ignore[arg-type]
    return found, PlannedJob(key=extract, node=found.node)


def plan_repush(plan: StartPlan, existing: dict[JobKey, ExistingJob]) -> StartPlan:
    """A start in another format than the run's: every job is built again, so no file keeps the old one.

    Only for a run with nothing in flight (the caller refuses the switch otherwise)."""
    planned = _planned_keys(plan)
    again = StartPlan(new=plan.new, retry=[*plan.retry, *plan.in_flight, *plan.completed])
    again.retry += [_again(key, found) for key, found in existing.items() if key not in planned]
    return again


def plan_failed_again(plan: StartPlan, existing: dict[JobKey, ExistingJob]) -> StartPlan:
    """Failed jobs whose list rows an earlier run completed (a re-push in another format, or a job that
    failed at notify) are not selected by the list, yet starting the push again must retry them: the
    push's files would otherwise stay half in one format, half in another."""
    planned = _planned_keys(plan)
    plan.retry += [
        _again(key, found) for key, found in existing.items() if found.state == FAILED and key not in planned
    ]
    return plan


def auto_start_due(
    today: dt.date,
    now: dt.datetime,
    calendar: PushCalendar,
    activity_for: dict[dt.date, ListActivity],
    runs: set[dt.date],
    quiet_period: float,
) -> dt.date | None:
    """The push date the scheduler should start by itself now, if any.

    From a push date on (the latest one on or before today), once the list holds rows for it that are
    not completed, none was added for `quiet_period` seconds, and no run exists yet for it.
    """
    latest = calendar.latest_on_or_before(today)
    if latest is None or latest.date in runs:
        return None
    activity = activity_for.get(latest.date)
    if activity is None or activity.pending == 0 or activity.last_added is None:
        return None
    if (now - activity.last_added).total_seconds() < quiet_period:
        return None
    return latest.date
