"""What the push report shows, read from otn-push's own tables and from every node database."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.calendar import PushCalendar
from shared.db import EmailSent, Job, PushRun
from shared.nodes import NodeUnavailable, connection
from shared.nodeschema import MATCH_UNQUALIFIED, D, P, R

TYPE_NAMES = {"t": "matched", "q": "qualified", "u": "unqualified", "s": "sentinel"}
STAGES = ("extract", "upload", "notify")
TOP_PROJECTS = 20


@dataclass
class ExtractRow:
    extract: str
    code: str
    year: int
    type: str
    node: str | None
    state: str
    rows: int | None
    files: list[dict[str, Any]]
    recipients: list[str]
    reason: str | None
    created_at: dt.datetime
    extracted_at: dt.datetime | None
    uploaded_at: dt.datetime | None
    notified_at: dt.datetime | None
    completed_at: dt.datetime | None

    def stage_seconds(self) -> dict[str, float]:
        """Time in each stage that the job went through (extract includes waiting for an extractor)."""
        marks = [self.created_at, self.extracted_at, self.uploaded_at, self.notified_at]
        found = {}
        for stage, start, end in zip(STAGES, marks, marks[1:], strict=False):
            if start is not None and end is not None:
                found[stage] = max(0.0, (end - start).total_seconds())
        return found


@dataclass
class NodeFigures:
    node: str
    reachable: bool
    error: str | None = None
    projects: int = 0
    tags: int = 0
    detections: int = 0
    new_detections: int = 0  # datelastmodified after the previous push, up to this one
    # unqualified detections of the node's top projects: project -> year -> count
    unqualified: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass
class ReportData:
    push_date: dt.date
    previous_push: dt.date | None
    run_state: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    generated_at: dt.datetime
    extracts: list[ExtractRow]
    emails: list[tuple[str, str, dt.datetime | None]]  # project, recipient, sent_at
    nodes: list[NodeFigures]

    @property
    def cutoff(self) -> dt.datetime:
        return dt.datetime.combine(self.push_date, dt.time(0), tzinfo=dt.UTC)

    def by_type_and_state(self) -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {name: Counter() for name in TYPE_NAMES.values()}
        for e in self.extracts:
            found[TYPE_NAMES.get(e.type, e.type)][e.state] += 1
        return found

    def rows_per_project(self) -> list[tuple[str, int]]:
        totals: Counter[str] = Counter()
        for e in self.extracts:
            totals[e.code] += e.rows or 0
        return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


async def read_push(sessions: async_sessionmaker[AsyncSession], push_date: dt.date) -> dict[str, Any]:
    async with sessions() as session:
        run = (
            await session.execute(select(PushRun).where(PushRun.push_date == push_date))
        ).scalar_one_or_none()
        jobs = (
            (
                await session.execute(
                    select(Job).where(Job.push_date == push_date).order_by(Job.code, Job.year)
                )
            )
            .scalars()
            .all()
        )
        emails = (
            (
                await session.execute(
                    select(EmailSent).where(EmailSent.push_date == push_date).order_by(EmailSent.id)
                )
            )
            .scalars()
            .all()
        )
    recipients: dict[str, list[str]] = defaultdict(list)
    for email in emails:
        recipients[email.project].append(email.recipient)
    extracts = [
        ExtractRow(
            extract=f"{j.code},{j.year},{j.type}",
            code=j.code,
            year=j.year,
            type=j.type,
            node=j.node,
            state=j.state,
            rows=j.rows,
            files=list(j.files or []),
            recipients=recipients.get(j.code, []) if j.notified_at or j.completed_at else [],
            reason=j.reason,
            created_at=j.created_at,
            extracted_at=j.extracted_at,
            uploaded_at=j.uploaded_at,
            notified_at=j.notified_at,
            completed_at=j.completed_at,
        )
        for j in jobs
    ]
    return {
        "run": run,
        "extracts": extracts,
        "emails": [(e.project, e.recipient, e.sent_at) for e in emails],
    }


async def node_figures(node: str, url: str, previous: dt.date | None, push_date: dt.date) -> NodeFigures:
    """A node's projects, tags and detections, as OTN's own push report counts them."""
    since = previous or dt.date(1900, 1, 1)
    try:
        async with connection(node, url) as conn:
            projects = await conn.fetchval(f"SELECT count(*) FROM {P.table} WHERE {P.node} = $1", node)
            tags = await conn.fetchval(
                f"SELECT count(DISTINCT r.{R.tagname}) FROM {R.table} r "
                f"JOIN {P.table} p ON p.{P.code} = r.{R.project} WHERE p.{P.node} = $1",
                node,
            )
            total, new = await conn.fetchrow(
                f"SELECT count(*), count(*) FILTER "
                f"(WHERE {D.date_modified} > $1 AND {D.date_modified} <= $2) FROM {D.table}",
                since,
                push_date,
            )
            rows = await conn.fetch(
                f"SELECT {D.project} AS project, extract(year FROM {D.datecollected})::int AS year, "
                f"count(*) AS n FROM {D.table} WHERE {D.relationship} = $1 GROUP BY 1, 2",
                MATCH_UNQUALIFIED,
            )
    except NodeUnavailable as exc:
        return NodeFigures(node, False, error=str(exc))
    per_project: dict[str, dict[int, int]] = defaultdict(dict)
    for row in rows:
        per_project[row["project"]][row["year"]] = int(row["n"])
    top = sorted(per_project.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:TOP_PROJECTS]
    return NodeFigures(node, True, None, int(projects), int(tags), int(total), int(new), dict(top))


def previous_push(push_date: dt.date, configured: list[dt.date]) -> dt.date | None:
    before = PushCalendar(configured).latest_on_or_before(push_date - dt.timedelta(days=1))
    return before.date if before else None


async def read_report(
    sessions: async_sessionmaker[AsyncSession],
    nodes: dict[str, str],
    push_date: dt.date,
    configured_push_dates: list[dt.date],
    now: dt.datetime,
) -> ReportData:
    push = await read_push(sessions, push_date)
    previous = previous_push(push_date, configured_push_dates)
    figures = [await node_figures(node, url, previous, push_date) for node, url in nodes.items()]
    run = push["run"]
    return ReportData(
        push_date=push_date,
        previous_push=previous,
        run_state=run.state if run else None,
        started_at=run.started_at if run else None,
        finished_at=run.finished_at if run else None,
        generated_at=now,
        extracts=push["extracts"],
        emails=push["emails"],
        nodes=figures,
    )
