"""Transactional outbox: events are written in the same transaction as the state they announce.

`add_to_outbox` (or `add_to_outbox_once`) stages a message in the caller's session; `OutboxRelay`
publishes pending rows in id order (persistent, mandatory, confirmed) and marks them published. Rows are
claimed with `FOR UPDATE SKIP LOCKED`, so several relays (one per process) never publish a row twice
concurrently. A crash between the broker's confirm and the commit of `published_at` republishes that row
once more: consumers are idempotent and see the same message id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faststream.rabbit import RabbitBroker
from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.broker import PublishError, publish
from shared.db import OutboxMessage
from shared.logs import get_logger
from shared.redact import redact_text
from shared.settings import Settings

log = get_logger("outbox")


def _payload(message: BaseModel) -> dict[str, Any]:
    return message.model_dump(mode="json")


def add_to_outbox(
    session: AsyncSession, producer: str, routing_key: str, message: BaseModel, message_id: str
) -> None:
    """Stage `message` for publication in the caller's transaction.

    `message_id` is unique in the outbox: staging the same id twice makes the commit fail
    (IntegrityError), so use `add_to_outbox_once` when the same event may legitimately be staged again.
    """
    session.add(
        OutboxMessage(
            producer=producer, routing_key=routing_key, message_id=message_id, payload=_payload(message)
        )
    )


async def add_to_outbox_once(
    session: AsyncSession, producer: str, routing_key: str, message: BaseModel, message_id: str
) -> bool:
    """Stage `message` unless a message with this id is already in the outbox; True if staged now."""
    stmt = (
        insert(OutboxMessage)
        .values(producer=producer, routing_key=routing_key, message_id=message_id, payload=_payload(message))
        .on_conflict_do_nothing(index_elements=[OutboxMessage.message_id])
        .returning(OutboxMessage.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


class OutboxRelay:
    """Publishes pending outbox rows; `kick()` after a commit, and it also polls every few seconds."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        broker: RabbitBroker,
        settings: Settings,
        producer: str | None = None,
        poll_interval: float = 2.0,
        batch_size: int = 100,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.broker = broker
        self.settings = settings
        self.producer = producer
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def kick(self) -> None:
        """Ask the relay to look for pending rows now (call after committing an outbox row)."""
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-relay")
        return self._task

    async def run(self) -> None:
        delay = self.poll_interval
        while not self._stopping:
            try:
                while await self.relay_once():
                    pass
                self.failures = 0
                delay = self.poll_interval
            except (PublishError, OSError, ConnectionError) as exc:
                self.failures += 1
                delay = min(30.0, self.poll_interval * 2 ** min(self.failures, 4))
                log.warning("outbox relay: %s; retrying in %.0fs", redact_text(str(exc)), delay)
            except Exception as exc:  # keep relaying whatever one batch did
                self.failures += 1
                delay = min(30.0, self.poll_interval * 2 ** min(self.failures, 4))
                log.exception("outbox relay failed (%s); retrying in %.0fs", type(exc).__name__, delay)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows in id order; returns how many were published."""
        published = 0
        error: Exception | None = None
        async with self.sessionmaker() as session, session.begin():
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            if self.producer is not None:
                query = query.where(OutboxMessage.producer == self.producer)
            rows = (await session.execute(query)).scalars().all()
            for row in rows:
                try:
                    await publish(self.broker, self.settings, row.routing_key, row.payload, row.message_id)
                except Exception as exc:
                    error = exc
                    break
                published += 1
            # whatever was confirmed is marked, even when a later row of the batch failed
            done = [row.id for row in rows[:published]]
            if done:
                await session.execute(
                    update(OutboxMessage).where(OutboxMessage.id.in_(done)).values(published_at=func.now())
                )
        if error is not None:
            raise error
        if published:
            log.debug("outbox relay published %d message(s)", published)
        return published

    async def stop(self) -> None:
        """Stop after the batch in hand; rows not yet published stay pending for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
