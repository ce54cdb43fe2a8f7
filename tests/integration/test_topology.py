"""Topology against the real RabbitMQ: persistence, unroutable publishes, dead-lettering, prefetch."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker

from shared.broker import PublishError, publish
from shared.messages import EXTRACT_REQUESTED, PUSH_COMPLETED, ExtractKey, ExtractRequested, PushCompleted
from shared.settings import Settings
from shared.topology import QUEUES, declare_topology, dlq_name, queue_name, subscriber
from tests.integration.conftest import Rabbit, eventually, get_one, message_count

pytestmark = pytest.mark.integration


def request(job_id: int) -> ExtractRequested:
    return ExtractRequested(
        push_date="2022-10-20", job_id=job_id, extract=ExtractKey(code="NSBS", year=2022, type="t")
    )


async def test_published_messages_are_persistent_and_routed(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    broker = await rabbit.connected(settings)
    await publish(broker, settings, EXTRACT_REQUESTED, request(7), "extract.requested:test:7")
    message = await get_one(queue_name(settings, "extractor.jobs"))
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == "extract.requested:test:7"
    assert ExtractRequested.model_validate(json.loads(message.body)).job_id == 7
    # push.completed has no worker, but is kept in the bounded watch queue rather than lost
    done = PushCompleted(push_date="2022-10-20", run_id=1, completed=1, failed=0)
    await publish(broker, settings, PUSH_COMPLETED, done, "push.completed:test")
    assert json.loads((await get_one(queue_name(settings, "push.events"))).body)["completed"] == 1


async def test_every_role_queue_is_bound_to_all_its_keys(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    broker = await rabbit.connected(settings)
    for key in sorted({key for keys in QUEUES.values() for key in keys}):
        await publish(broker, settings, key, {"probe": key}, f"probe:{key}")
    for role, keys in QUEUES.items():
        await eventually(
            lambda role=role, keys=keys: _count_is(queue_name(settings, role), len(keys)),
            f"{role} to hold one message per key",
        )


async def _count_is(queue: str, expected: int) -> bool:
    return await message_count(queue) == expected


async def test_unroutable_publish_raises(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    broker = await rabbit.connected(settings)
    with pytest.raises(PublishError, match="not delivered to any queue"):
        await publish(broker, settings, "no.such.key", request(1), "lost:1")
    # the channel stays usable after a returned message
    await publish(broker, settings, EXTRACT_REQUESTED, request(2), "extract.requested:test:2")
    assert (await get_one(queue_name(settings, "extractor.jobs"))).message_id == "extract.requested:test:2"


async def test_message_failing_past_the_delivery_limit_is_dead_lettered(
    make_settings, rabbit: Rabbit
) -> None:
    settings: Settings = make_settings(delivery_limit=2)
    broker: RabbitBroker = rabbit.broker(settings)
    attempts: list[int] = []

    @subscriber(broker, settings, "extractor.jobs")
    async def always_fails(message: ExtractRequested) -> None:
        attempts.append(message.job_id)
        raise RuntimeError("boom")

    await broker.connect()
    await declare_topology(broker, settings)
    await broker.start()
    await publish(broker, settings, EXTRACT_REQUESTED, request(3), "extract.requested:test:3")
    dead = await get_one(dlq_name(settings, "extractor.jobs"), within=30)
    assert dead.message_id == "extract.requested:test:3"
    # first delivery + `delivery_limit` redeliveries, then dead-lettered
    assert attempts == [3] * (settings.delivery_limit + 1)
    assert await message_count(queue_name(settings, "extractor.jobs")) == 0


async def test_prefetch_bounds_concurrency(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings(prefetch=2)
    broker: RabbitBroker = rabbit.broker(settings)
    gate = asyncio.Event()
    active = 0
    most = 0
    done: list[int] = []

    @subscriber(broker, settings, "extractor.jobs")
    async def slow(message: ExtractRequested) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await gate.wait()
        active -= 1
        done.append(message.job_id)

    await broker.connect()
    await declare_topology(broker, settings)
    await broker.start()
    for job in range(6):
        await publish(broker, settings, EXTRACT_REQUESTED, request(job), f"extract.requested:test:p{job}")

    async def two_in_hand() -> bool:
        return active == 2

    await eventually(two_in_hand, "two messages in hand")
    # the other four wait in the queue, not in this consumer's memory
    await eventually(lambda: _count_is(queue_name(settings, "extractor.jobs"), 4), "four ready messages")
    assert most == 2
    gate.set()

    async def all_done() -> bool:
        return len(done) == 6

    await eventually(all_done, "all six handled")
    assert most == 2
    assert sorted(done) == list(range(6))


async def test_queues_are_durable_quorum_queues_with_their_arguments(make_settings, rabbit: Rabbit) -> None:
    import aiormq

    from shared.topology import queue_arguments
    from tests.integration.conftest import AMQP_URL

    settings: Settings = make_settings()
    await rabbit.connected(settings)
    name = queue_name(settings, "uploader.files")
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        # re-declaring with exactly these arguments is accepted: they are what the queue has
        args = {"x-queue-type": "quorum", **queue_arguments(settings, "uploader.files")}
        await channel.declare_queue(name, durable=True, arguments=args)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await channel.declare_queue(name, durable=True, arguments={**args, "x-queue-type": "classic"})
    finally:
        await connection.close()
