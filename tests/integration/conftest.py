"""Integration fixtures: the real local PostgreSQL and RabbitMQ, with unique names per test.

- `own_db`: a fresh database with otn-push's own tables migrated (Alembic), dropped afterwards;
- `test_id`: a short random id; `make_settings(**overrides)`: Settings whose exchange (and so every queue)
  is unique to the test, own DB = `own_db`, folders under `tmp_path`;
- `rabbit`: connects brokers made with `rabbit.broker(settings)`, declares their topology, and deletes
  every exchange and queue of those settings at teardown.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from faststream.rabbit import RabbitBroker

from shared.broker import make_broker
from shared.migrations import upgrade_async
from shared.nodes import ensure_database
from shared.settings import Settings
from shared.topology import QUEUES, WATCH_ROLES, declare_topology, dlq_name, dlx_name, queue_name
from tests.conftest import PG_ADMIN, pg_url

AMQP_URL = os.environ.get("OTN_PUSH_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")

pytestmark = pytest.mark.integration


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def own_db(test_id: str) -> AsyncIterator[str]:
    """URL of a fresh database holding otn-push's own tables (migrated to head)."""
    url = pg_url(f"otn_push_test_{test_id}_own")
    await ensure_database("own", url)
    await upgrade_async(url)
    yield url
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "otn_push_test_{test_id}_own" WITH (FORCE)')
    finally:
        await admin.close()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(test_id: str, own_db: str, tmp_path: Path) -> SettingsFactory:
    """`make_settings(nodes=..., home_node=..., **other)`: unique exchange, own DB, tmp folders."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "exchange": f"otn.push.test.{test_id}",
            "amqp_url": AMQP_URL,
            "database_url": own_db,
            "staging_dir": tmp_path / "staging",
            "store_dir": tmp_path / "store",
            "outbox_dir": tmp_path / "outbox",
            "retry_base_delay": 0.05,
            "delivery_limit": 3,
            "auto_push": False,
            "_env_file": None,
        }
        values.update(overrides)
        if "nodes" in values and "home_node" not in values:
            values["home_node"] = next(iter(values["nodes"]))
        return Settings(**values)

    return factory


class Rabbit:
    """Brokers for a test, and cleanup of every exchange/queue their settings name."""

    def __init__(self) -> None:
        self.brokers: list[RabbitBroker] = []
        self.settings: list[Settings] = []

    def broker(self, settings: Settings, **kwargs: Any) -> RabbitBroker:
        broker = make_broker(settings, **kwargs)
        self.brokers.append(broker)
        if settings.exchange not in {s.exchange for s in self.settings}:
            self.settings.append(settings)
        return broker

    async def connected(self, settings: Settings, **kwargs: Any) -> RabbitBroker:
        """A started broker (no subscribers needed) with the topology declared."""
        broker = self.broker(settings, **kwargs)
        await broker.connect()
        await declare_topology(broker, settings)
        return broker

    def track(self, settings: Settings) -> None:
        if settings.exchange not in {s.exchange for s in self.settings}:
            self.settings.append(settings)

    async def close(self) -> None:
        for broker in self.brokers:
            try:
                await broker.stop()
            except Exception:  # a test may have stopped it already
                pass
        connection = await aio_pika.connect(AMQP_URL)
        try:
            for settings in self.settings:
                channel = await connection.channel()
                for role in QUEUES:
                    await channel.queue_delete(queue_name(settings, role))
                    if role not in WATCH_ROLES:
                        await channel.queue_delete(dlq_name(settings, role))
                await channel.exchange_delete(settings.exchange)
                await channel.exchange_delete(dlx_name(settings))
                await channel.close()
        finally:
            await connection.close()


@pytest.fixture
async def rabbit() -> AsyncIterator[Rabbit]:
    helper = Rabbit()
    yield helper
    await helper.close()


async def get_one(queue: str, within: float = 10.0) -> aio_pika.abc.AbstractIncomingMessage:
    """Take (and ack) one message from a queue, waiting for it to arrive."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await q.get(no_ack=False, fail=False)
            if message is not None:
                await message.ack()
                return message
            if loop.time() > deadline:
                raise AssertionError(f"no message arrived in {queue} within {within}s")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def message_count(queue: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        return q.declaration_result.message_count or 0
    finally:
        await connection.close()


async def eventually(predicate: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    """Wait until the async predicate holds (polling), or fail naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
