"""`otn-push dlq list|replay` against the real RabbitMQ: dead letters shown with their reason, replayed
with their original routing key only after a confirm, and kept when the replay cannot be delivered."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import aio_pika
import pytest
from typer.testing import CliRunner

from otn_push.cli import app
from shared.broker import encode
from shared.deadletters import list_dead_letters, replay_dead_letters
from shared.final_delivery import ERROR_HEADER, QUEUE_HEADER, ROUTING_KEY_HEADER
from shared.messages import EXTRACT_REQUESTED, EXTRACT_UPLOADED, ExtractKey, ExtractRequested
from shared.settings import Settings
from shared.topology import dlq_name, dlx_name, queue_name
from tests.integration.conftest import AMQP_URL, Rabbit, eventually, get_one, message_count
from tests.integration.test_scheduler_cli import cli, environment

pytestmark = pytest.mark.integration


def job(code: str, job_id: int) -> ExtractRequested:
    return ExtractRequested(
        push_date="2025-09-01",  # type: ignore[arg-type]
        job_id=job_id,
        extract=ExtractKey(code=code, year=2022, type="t"),
    )


async def publish(settings: Settings, key: str, body: bytes, message_id: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(settings.exchange)
        message = aio_pika.Message(
            body,
            message_id=message_id,
            type=key,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key=key, mandatory=True)
    finally:
        await connection.close()


async def kill(settings: Settings, role: str, *, requeue_until_limit: bool) -> None:
    """Make the message at the head of the role's queue die: rejected at once, or nacked to the limit."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name(settings, role))
        dead = dlq_name(settings, role)
        before = await message_count(dead)
        for _ in range(settings.delivery_limit + 5):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                if await message_count(dead) > before:
                    return
                await asyncio.sleep(0.05)
                continue
            if requeue_until_limit:
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
                break

        async def arrived() -> bool:
            return await message_count(dead) > before

        await eventually(arrived, f"a dead letter in {dead}")
    finally:
        await connection.close()


async def test_dlq_list_and_replay(make_settings, rabbit: Rabbit) -> None:
    settings = make_settings()
    await rabbit.connected(settings)
    env = environment(settings)
    jobs, dead = queue_name(settings, "extractor.jobs"), dlq_name(settings, "extractor.jobs")

    await publish(settings, EXTRACT_REQUESTED, encode(job("NSBS", 1)), "job-nsbs")
    await kill(settings, "extractor.jobs", requeue_until_limit=False)
    await publish(settings, EXTRACT_REQUESTED, encode(job("SERC1", 2)), "job-serc1")
    await kill(settings, "extractor.jobs", requeue_until_limit=True)

    code, out, err = await cli(env, "dlq", "list", "--json")
    assert code == 0, err
    letters = {row["id"]: row for row in json.loads(out)}
    assert set(letters) == {"job-nsbs", "job-serc1"}
    nsbs, serc1 = letters["job-nsbs"], letters["job-serc1"]
    assert nsbs["queue"] == "extractor.jobs" and nsbs["routing_key"] == EXTRACT_REQUESTED
    assert nsbs["business_key"] == "2025-09-01 NSBS,2022,t"
    assert nsbs["reason"] == "rejected" and nsbs["deaths"] == 1
    assert serc1["reason"] == "delivery_limit" and serc1["business_key"] == "2025-09-01 SERC1,2022,t"
    assert nsbs["first_death"] and serc1["first_death"]
    assert await message_count(dead) == 2, "listing must not remove anything"

    code, out, _ = await cli(env, "dlq", "list")
    assert code == 0 and "job-nsbs" in out and "delivery_limit" in out and "2 dead-lettered" in out

    code, out, err = await cli(env, "dlq", "replay", "--queue", "extractor.jobs", "--id", "job-serc1")
    assert code == 0, err
    assert "1 message(s) replayed" in out
    assert await message_count(dead) == 1 and await message_count(jobs) == 1
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(jobs)
        back = await queue.get(no_ack=False)
        assert back.routing_key == EXTRACT_REQUESTED and back.message_id == "job-serc1"
        assert back.body == encode(job("SERC1", 2))
        assert "x-death" not in (back.headers or {}) and back.headers["x-otn-replayed"] == 1
        await back.ack()
    finally:
        await connection.close()


def test_dlq_commands_refuse_what_they_cannot_do(make_settings) -> None:  # type: ignore[no-untyped-def]
    env = environment(make_settings())  # an exchange nobody declared: no dead-letter queue exists
    runner = CliRunner()
    missing = runner.invoke(app, ["dlq", "replay", "--id", "no-such-id"], env=env)
    assert missing.exit_code == 1 and "no dead letter with id no-such-id" in missing.output
    neither = runner.invoke(app, ["dlq", "replay"], env=env)
    assert neither.exit_code == 2 and "--all" in neither.output
    unknown = runner.invoke(app, ["dlq", "list", "--queue", "nope"], env=env)
    assert (
        unknown.exit_code == 1 and "--queue 'nope'" in unknown.output and "extractor.jobs" in unknown.output
    )


async def test_replay_that_cannot_be_delivered_keeps_the_dead_letter(make_settings, rabbit: Rabbit) -> None:
    settings = make_settings()
    await rabbit.connected(settings)
    env = environment(settings)
    dead = dlq_name(settings, "notifier.uploads")
    body = json.dumps({"push_date": "2025-09-01", "project": "NSBS"}).encode()
    await publish(settings, EXTRACT_UPLOADED, body, "uploaded-1")
    await kill(settings, "notifier.uploads", requeue_until_limit=False)
    await kill(settings, "scheduler.events", requeue_until_limit=False)  # the same event, also bound there

    connection = await aio_pika.connect(AMQP_URL)
    try:  # nothing is bound to extract.uploaded any more: the republish is returned as unroutable
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        for role in ("notifier.uploads", "scheduler.events"):
            queue = await channel.get_queue(queue_name(settings, role))
            await queue.unbind(exchange, EXTRACT_UPLOADED)
    finally:
        await connection.close()

    code, out, err = await cli(env, "dlq", "replay", "--all", "--queue", "notifier.uploads")
    assert code == 1
    assert "kept notifier.uploads uploaded-1" in out and "not delivered" in out
    assert "stay in their dead-letter queue" in err
    assert await message_count(dead) == 1

    rows = await list_dead_letters(settings)
    assert sorted(r.queue for r in rows) == ["notifier.uploads", "scheduler.events"]
    assert all(r.business_key == "2025-09-01 project NSBS" for r in rows)


async def test_a_recorded_reason_and_routing_key_are_shown_and_used(make_settings, rabbit: Rabbit) -> None:
    """A dead letter as shared/final_delivery.py makes it: no x-death, the handler's reason in headers."""
    settings = make_settings()
    await rabbit.connected(settings)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        dlx = await channel.get_exchange(dlx_name(settings))
        copy = aio_pika.Message(
            encode(job("HFX", 7)),
            message_id="job-hfx",
            headers={
                ERROR_HEADER: "ExtractInputError: project HFX is on no node (after 3 deliveries)",
                ROUTING_KEY_HEADER: EXTRACT_REQUESTED,
                QUEUE_HEADER: queue_name(settings, "extractor.jobs"),
            },
            timestamp=dt.datetime(2025, 9, 10, 12, 0, tzinfo=dt.UTC),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await dlx.publish(copy, routing_key=queue_name(settings, "extractor.jobs"), mandatory=True)
    finally:
        await connection.close()

    [letter] = await list_dead_letters(settings)
    assert letter.reason == "ExtractInputError: project HFX is on no node (after 3 deliveries)"
    assert (letter.routing_key, letter.deaths, letter.business_key) == (
        EXTRACT_REQUESTED,
        1,
        "2025-09-01 HFX,2022,t",
    )
    assert letter.first_death == dt.datetime(2025, 9, 10, 12, 0, tzinfo=dt.UTC)

    result = await replay_dead_letters(settings, ids={"job-hfx"})
    assert [r.id for r in result.replayed] == ["job-hfx"] and result.failed == []
    back = await get_one(queue_name(settings, "extractor.jobs"))
    assert back.routing_key == EXTRACT_REQUESTED and back.body == encode(job("HFX", 7))
    assert not {ERROR_HEADER, ROUTING_KEY_HEADER, QUEUE_HEADER} & set(back.headers or {})
    assert await message_count(dlq_name(settings, "extractor.jobs")) == 0
