"""Where a push stands, from otn-push's own tables: jobs by state, rows, bytes, slowest, failed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import COMPLETED, FAILED, JOB_STATES, Job, OutboxMessage, PushRun

FINAL = (COMPLETED, FAILED)


@dataclass
class StateTotals:
    jobs: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass
class JobLine:
    extract: str
    node: str | None
    state: str
    seconds: float  # total time so far (or until completed)
    reason: str | None = None


@dataclass
class PushSummary:
    push_date: str
    state: str
    started_at: str
    finished_at: str | None
    since_cutoff: float  # seconds from the push date (cut-off, 00:00 UTC) to now
    by_state: dict[str, StateTotals] = field(default_factory=dict)
    slowest: list[JobLine] = field(default_factory=list)
    failed: list[JobLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(t.jobs for t in self.by_state.values())


@dataclass
class OutboxBacklog:
    pending: int
    oldest_age: float | None


def files_bytes(files: list[dict[str, Any]] | None) -> int:
    return sum(int(f.get("size") or 0) for f in files or [] if isinstance(f, dict))


def cutoff(push_date: dt.date) -> dt.datetime:
    return dt.datetime.combine(push_date, dt.time(0), tzinfo=dt.UTC)


async def latest_push_date(sessions: async_sessionmaker[AsyncSession]) -> dt.date | None:
    async with sessions() as session:
        return await session.scalar(select(PushRun.push_date).order_by(PushRun.started_at.desc()).limit(1))


async def push_summary(
    sessions: async_sessionmaker[AsyncSession], push_date: dt.date, now: dt.datetime, slowest: int = 5
) -> PushSummary | None:
    async with sessions() as session:
        run = (
            await session.execute(select(PushRun).where(PushRun.push_date == push_date))
        ).scalar_one_or_none()
        if run is None:
            return None
        jobs = (await session.execute(select(Job).where(Job.push_date == push_date))).scalars().all()
    summary = PushSummary(
        push_date=push_date.isoformat(),
        state=run.state,
        started_at=run.started_at.isoformat(),
        finished_at=run.finished_at.isoformat() if run.finished_at else None,
        since_cutoff=(now - cutoff(push_date)).total_seconds(),
        by_state={state: StateTotals() for state in JOB_STATES},
    )
    lines = []
    for job in jobs:
        totals = summary.by_state.setdefault(job.state, StateTotals())
        totals.jobs += 1
        totals.rows += job.rows or 0
        totals.bytes += files_bytes(job.files)
        end = job.completed_at if job.state == COMPLETED and job.completed_at else now
        if job.state == FAILED:
            end = job.updated_at or now
        line = JobLine(
            f"{job.code},{job.year},{job.type}",
            job.node,
            job.state,
            max(0.0, (end - job.created_at).total_seconds()),
            job.reason,
        )
        lines.append(line)
        if job.state == FAILED:
            summary.failed.append(line)
    summary.slowest = sorted(lines, key=lambda line: line.seconds, reverse=True)[:slowest]
    summary.failed.sort(key=lambda line: line.extract)
    return summary


async def outbox_backlog(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> OutboxBacklog:
    async with sessions() as session:
        pending, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.published_at.is_(None)
                )
            )
        ).one()
    return OutboxBacklog(int(pending), (now - oldest).total_seconds() if oldest is not None else None)


async def db_now(sessions: async_sessionmaker[AsyncSession]) -> dt.datetime:
    async with sessions() as session:
        now = await session.scalar(select(func.now()))
    assert now is not None
    return now
