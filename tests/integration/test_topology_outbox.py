"""Transactional outbox + relay against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from shared.db import OutboxMessage, make_engine, make_sessionmaker
from shared.messages import EXTRACT_REQUESTED, PUSH_COMPLETED, ExtractKey, ExtractRequested, PushCompleted
from shared.outbox import OutboxRelay, add_to_outbox, add_to_outbox_once
from shared.settings import Settings
from shared.topology import queue_name
from tests.integration.conftest import Rabbit, eventually, get_one, message_count

pytestmark = pytest.mark.integration


def request(job_id: int) -> ExtractRequested:
    return ExtractRequested(
        push_date="2022-10-20", job_id=job_id, extract=ExtractKey(code="NSBS", year=2022, type="t")
    )


async def test_relay_publishes_committed_rows_in_order_once(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    broker = await rabbit.connected(settings)
    engine = make_engine(settings.own_database_url)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, broker, settings, producer="test", poll_interval=0.2)
    try:
        async with sessions() as session, session.begin():
            for job in range(5):
                add_to_outbox(session, "test", EXTRACT_REQUESTED, request(job), f"req:{job}")
            assert await add_to_outbox_once(session, "test", EXTRACT_REQUESTED, request(9), "req:9")
            # staged twice: kept once
            assert not await add_to_outbox_once(session, "test", EXTRACT_REQUESTED, request(9), "req:9")
        async with sessions() as session, session.begin():
            add_to_outbox(session, "test", EXTRACT_REQUESTED, request(77), "rolled-back")
            await session.rollback()
        # another producer's rows are not this relay's business
        async with sessions() as session, session.begin():
            add_to_outbox(session, "other", EXTRACT_REQUESTED, request(50), "other:50")

        relay.start()
        relay.kick()
        jobs = queue_name(settings, "extractor.jobs")

        async def six() -> bool:
            return await message_count(jobs) == 6

        await eventually(six, "six published requests")
        got = [json.loads((await get_one(jobs)).body)["job_id"] for _ in range(6)]
        assert got == [0, 1, 2, 3, 4, 9]
        async with sessions() as session:
            rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        published = {r.message_id: r.published_at is not None for r in rows}
        assert published == {**{f"req:{j}": True for j in range(5)}, "req:9": True, "other:50": False}
        # running the relay again publishes nothing more
        assert await relay.relay_once() == 0
        assert await message_count(jobs) == 0
    finally:
        await relay.stop()
        await engine.dispose()


async def test_an_unroutable_row_stays_pending_and_blocks_nothing_before_it(
    make_settings, rabbit: Rabbit
) -> None:
    settings: Settings = make_settings()
    broker = await rabbit.connected(settings)
    engine = make_engine(settings.own_database_url)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, broker, settings)
    try:
        async with sessions() as session, session.begin():
            add_to_outbox(session, "test", EXTRACT_REQUESTED, request(1), "ok:1")
            add_to_outbox(session, "test", "nobody.listens", request(2), "lost:2")
            done = PushCompleted(push_date="2022-10-20", run_id=1, completed=1, failed=0)
            add_to_outbox(session, "test", PUSH_COMPLETED, done, "after:3")
        with pytest.raises(Exception, match="not delivered to any queue"):
            await relay.relay_once()
        async with sessions() as session:
            rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        assert [(r.message_id, r.published_at is not None) for r in rows] == [
            ("ok:1", True),
            ("lost:2", False),
            ("after:3", False),
        ]
        assert await message_count(queue_name(settings, "extractor.jobs")) == 1
    finally:
        await engine.dispose()
