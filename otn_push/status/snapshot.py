"""One status snapshot: queues, the push, node databases, outbox — and what in them is flagged.

Each part is read on its own: a broker or database that cannot be reached is itself a flag, and the
other parts are still shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, ProgrammingError

from otn_push.status.nodecheck import NodeCheck, check_nodes, node_flags
from otn_push.status.pushes import (
    OutboxBacklog,
    PushSummary,
    db_now,
    latest_push_date,
    outbox_backlog,
    push_summary,
)
from otn_push.status.queue_age import AT_LEAST
from otn_push.status.queues import ManagementUnavailable, QueueStat, queue_flags, read_queues
from shared.broker_problem import broker_problem
from shared.db import make_engine, make_sessionmaker
from shared.redact import redact_text, redact_url
from shared.settings import Settings


@dataclass
class Snapshot:
    taken_at: str
    queues: list[QueueStat] = field(default_factory=list)
    push: PushSummary | None = None
    nodes: list[NodeCheck] = field(default_factory=list)
    outbox: OutboxBacklog | None = None
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _problem(exc: BaseException, settings: Settings) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact_text(f"{type(exc).__name__}: {text}", settings.secrets())[:300]


async def _queues(settings: Settings, snap: Snapshot) -> None:
    management = bool(settings.management_url)
    try:
        try:
            snap.queues = await read_queues(settings)
        except ManagementUnavailable as exc:  # what AMQP can tell is still worth showing
            snap.flags.append(f"{redact_text(str(exc), settings.secrets())}; queues read over AMQP instead")
            management = False
            snap.queues = await read_queues(settings, amqp_only=True)
    except Exception as exc:  # the broker being down is what status must report, not crash on
        snap.flags.append(broker_problem(settings.amqp_url, exc))  # it masks the URL's password
        return
    snap.flags += queue_flags(snap.queues, settings)
    snap.notes += age_notes(
        snap.queues, management, fallback=bool(settings.management_url) and not management
    )


def age_notes(queues: list[QueueStat], management: bool, fallback: bool = False) -> list[str]:
    """What the `oldest` column means, and why it is blank where it is."""
    if not management:
        return [
            "queues read over AMQP (ready, consumers; age unknown: AMQP only); "
            + ("the management API did not answer" if fallback else "set OTN_PUSH_MANAGEMENT_URL for more")
        ]
    notes = []
    if any(q.exists and q.age_basis == AT_LEAST for q in queues):
        notes.append(
            "oldest: ≥ is a lower bound from the management API's statistics history "
            "(RabbitMQ reports no message age for quorum queues)"
        )
    for q in queues:
        if q.exists and q.age_note:
            notes.append(f"{q.name}: {q.age_note}")
    return notes


async def _own_tables(settings: Settings, snap: Snapshot, push_date: dt.date | None) -> None:
    engine = make_engine(settings.own_database_url)
    try:
        sessions = make_sessionmaker(engine)
        now = await db_now(sessions)
        snap.outbox = await outbox_backlog(sessions, now)
        day = push_date or await latest_push_date(sessions)
        if day is None:
            snap.notes.append("no push has run yet")
        else:
            snap.push = await push_summary(sessions, day, now)
            if snap.push is None and push_date is not None:
                # asked for by date (cron, monitoring): a mistyped date must not look healthy
                snap.flags.append(f"no push run for {day} (--push-date)")
            elif snap.push is None:
                snap.notes.append(f"no push run for {day}")
    except ProgrammingError:
        snap.flags.append("otn-push's own tables are missing: run `otn-push db upgrade`")
        return
    except (DBAPIError, OSError, ConnectionError) as exc:
        where = redact_url(settings.own_database_url)
        snap.flags.append(f"own database unreachable ({where}): {_problem(exc, settings)}")
        return
    finally:
        await engine.dispose()
    if snap.outbox.pending > settings.status_max_outbox_backlog:
        snap.flags.append(
            f"outbox: {snap.outbox.pending} unpublished events (> {settings.status_max_outbox_backlog})"
        )
    if snap.outbox.oldest_age is not None and snap.outbox.oldest_age > settings.status_max_outbox_age:
        snap.flags.append(
            f"outbox: oldest unpublished event waits {snap.outbox.oldest_age:.0f}s "
            f"(> {settings.status_max_outbox_age:.0f}s): is the relay's service running?"
        )
    if snap.push is not None and len(snap.push.failed) > settings.status_max_failed_jobs:
        snap.flags.append(f"push {snap.push.push_date}: {len(snap.push.failed)} failed extract(s)")


async def _nodes(settings: Settings, snap: Snapshot) -> None:
    snap.nodes = await check_nodes(settings.nodes)
    snap.flags += node_flags(snap.nodes, settings.status_max_node_latency)


async def take_snapshot(settings: Settings, push_date: dt.date | None = None) -> Snapshot:
    snap = Snapshot(taken_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    await asyncio.gather(
        _queues(settings, snap), _own_tables(settings, snap, push_date), _nodes(settings, snap)
    )
    return snap
