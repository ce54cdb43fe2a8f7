"""Scheduler composition root: subscribers, outbox relay and the automatic push-time check."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream import FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scheduler import handlers
from services.scheduler.lists import ListPort, NodeLists
from shared.broker import make_broker, parse_or_reject, with_retries
from shared.calendar import PushCalendar
from shared.db import make_engine, make_sessionmaker
from shared.final_delivery import Rejected
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    PROJECT_NOTIFIED,
    PROJECT_NOTIFY_FAILED,
    ExtractCreated,
    ExtractFailed,
    ExtractUploaded,
    ProjectNotified,
    ProjectNotifyFailed,
    PushStart,
)
from shared.metrics import instrument
from shared.migrations import upgrade_async
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.topology import declare_topology, subscriber

log = logging.getLogger("otn_push.scheduler")


@dataclass
class SchedulerService:
    """What build_app wired together; tests reach the parts through `app.scheduler`."""

    settings: Settings
    broker: RabbitBroker
    ports: handlers.SchedulerPorts
    relay: OutboxRelay
    calendar: PushCalendar
    clock: Callable[[], dt.datetime]
    engine: AsyncEngine | None = None
    ticker: asyncio.Task[None] | None = None

    async def tick(self) -> dt.date | None:
        if not self.settings.auto_push:
            return None

        async def start(cmd: PushStart) -> None:
            await handlers.start_push(cmd, self.ports)

        return await handlers.auto_push_tick(
            self.ports, self.calendar, self.settings.quiet_period, self.clock(), start
        )

    async def tick_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # a node or the DB being down must not stop the ticker
                log.warning("automatic push check failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.scheduler_tick)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_app(
    settings: Settings,
    *,
    broker: RabbitBroker | None = None,
    lists: ListPort | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    clock: Callable[[], dt.datetime] = _utcnow,
    migrate: bool = True,
    ticker: bool = True,
) -> FastStream:
    broker = broker or make_broker(settings)
    engine = None
    if sessions is None:
        engine = make_engine(settings.own_database_url)
        sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, broker, settings, producer=handlers.PRODUCER)
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists or NodeLists(settings), kick=relay.kick)
    service = SchedulerService(
        settings, broker, ports, relay, PushCalendar(settings.push_dates), clock, engine=engine
    )

    async def retrying(call: Callable[[], Awaitable[Any]], what: str) -> None:
        await with_retries(
            call, attempts=settings.retry_attempts, base_delay=settings.retry_base_delay, what=what
        )

    @subscriber(broker, settings, "scheduler.commands")
    async def on_command(body: Any, message: RabbitMessage) -> None:
        cmd = parse_or_reject(PushStart, body, message.raw_message.routing_key or "")
        await retrying(lambda: handlers.start_push(cmd, ports), f"push.start {cmd.push_date}")

    @subscriber(broker, settings, "scheduler.events")
    async def on_event(body: Any, message: RabbitMessage) -> None:
        key = message.raw_message.routing_key or ""
        call: Callable[[], Awaitable[Any]]
        if key == EXTRACT_CREATED:
            created = parse_or_reject(ExtractCreated, body, key)
            call = lambda: handlers.on_extract_created(created, ports)  # noqa: E731
        elif key == EXTRACT_UPLOADED:
            uploaded = parse_or_reject(ExtractUploaded, body, key)
            call = lambda: handlers.on_extract_uploaded(uploaded, ports)  # noqa: E731
        elif key == EXTRACT_FAILED:
            failed = parse_or_reject(ExtractFailed, body, key)
            call = lambda: handlers.on_extract_failed(failed, ports)  # noqa: E731
        elif key == PROJECT_NOTIFIED:
            notified = parse_or_reject(ProjectNotified, body, key)
            call = lambda: handlers.on_project_notified(notified, ports)  # noqa: E731
        elif key == PROJECT_NOTIFY_FAILED:
            notify_failed = parse_or_reject(ProjectNotifyFailed, body, key)
            call = lambda: handlers.on_project_notify_failed(notify_failed, ports)  # noqa: E731
        else:
            raise Rejected(f"unexpected routing key {key!r} on the scheduler's event queue")
        await retrying(call, key)

    async def startup() -> None:
        if migrate:
            await upgrade_async(settings.own_database_url)
        await broker.connect()
        await declare_topology(broker, settings)

    async def started() -> None:
        relay.start()
        if ticker and settings.auto_push:
            service.ticker = asyncio.create_task(service.tick_forever(), name="auto-push")

    async def shutdown() -> None:
        if service.ticker is not None:
            service.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service.ticker
        await relay.stop()

    async def stopped() -> None:
        if engine is not None:
            await engine.dispose()

    app = FastStream(
        broker,
        logger=log,
        on_startup=[startup],
        after_startup=[started],
        on_shutdown=[shutdown],
        after_shutdown=[stopped],
    )
    app.scheduler = service  # type: ignore[attr-defined]
    instrument(app, broker, settings, "scheduler")
    return app
