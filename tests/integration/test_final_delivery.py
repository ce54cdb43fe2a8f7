"""Dead-lettered messages carry their reason (`x-otn-error`) and original routing key (real RabbitMQ)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker

from shared.broker import parse_or_reject, publish
from shared.final_delivery import ERROR_HEADER, QUEUE_HEADER, ROUTING_KEY_HEADER
from shared.messages import EXTRACT_REQUESTED, ExtractKey, ExtractRequested
from shared.settings import Settings
from shared.topology import declare_topology, dlq_name, queue_name, subscriber
from tests.integration.conftest import Rabbit, get_one, message_count

pytestmark = pytest.mark.integration


def request(job_id: int) -> ExtractRequested:
    return ExtractRequested(
        push_date="2022-10-20", job_id=job_id, extract=ExtractKey(code="NSBS", year=2022, type="t")
    )


async def test_last_failure_is_recorded_on_the_dead_letter(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings(delivery_limit=2)
    broker: RabbitBroker = rabbit.broker(settings)
    attempts: list[int] = []

    @subscriber(broker, settings, "extractor.jobs")
    async def always_fails(message: ExtractRequested) -> None:
        attempts.append(message.job_id)
        raise RuntimeError(f"disk on fire, attempt {len(attempts)}")

    await broker.connect()
    await declare_topology(broker, settings)
    await broker.start()
    await publish(broker, settings, EXTRACT_REQUESTED, request(3), "extract.requested:test:3")
    dead = await get_one(dlq_name(settings, "extractor.jobs"), within=30)
    assert attempts == [3] * (settings.delivery_limit + 1)
    assert dead.message_id == "extract.requested:test:3"
    assert json.loads(dead.body)["job_id"] == 3
    headers = dead.headers or {}
    assert headers[ERROR_HEADER] == "RuntimeError: disk on fire, attempt 3 (after 3 deliveries)"
    assert headers[ROUTING_KEY_HEADER] == EXTRACT_REQUESTED
    assert headers[QUEUE_HEADER] == queue_name(settings, "extractor.jobs")
    assert await message_count(queue_name(settings, "extractor.jobs")) == 0


async def test_malformed_message_is_dead_lettered_at_once_with_the_problem(
    make_settings, rabbit: Rabbit
) -> None:
    settings: Settings = make_settings(delivery_limit=4)
    broker: RabbitBroker = rabbit.broker(settings)
    seen: list[object] = []

    @subscriber(broker, settings, "extractor.jobs")
    async def strict(body: dict) -> None:
        seen.append(body)
        parse_or_reject(ExtractRequested, body, EXTRACT_REQUESTED)

    await broker.connect()
    await declare_topology(broker, settings)
    await broker.start()
    await publish(broker, settings, EXTRACT_REQUESTED, {"push_date": "2022-10-20"}, "bad:1")
    dead = await get_one(dlq_name(settings, "extractor.jobs"), within=30)
    assert len(seen) == 1  # not retried: it can never succeed
    error = str((dead.headers or {})[ERROR_HEADER])
    assert error.startswith("malformed extract.requested message: job_id: Field required"), error
    assert (dead.headers or {})[ROUTING_KEY_HEADER] == EXTRACT_REQUESTED


@pytest.mark.parametrize("body", [b'{"not": "valid"', b"\xff\xfe not text", b"[1, 2]"])
async def test_a_body_that_is_not_a_json_object_is_dead_lettered_at_once(
    make_settings, rabbit: Rabbit, body: bytes
) -> None:
    """Labelled application/json but not JSON (or not an object): FastStream's own decoding used to fail
    before the handler, and the message was retried like a transient fault until the delivery limit."""
    settings: Settings = make_settings(delivery_limit=4)
    broker: RabbitBroker = rabbit.broker(settings)
    seen: list[object] = []

    @subscriber(broker, settings, "extractor.jobs")
    async def strict(body: Any) -> None:
        seen.append(body)
        parse_or_reject(ExtractRequested, body, EXTRACT_REQUESTED)

    await broker.connect()
    await declare_topology(broker, settings)
    await broker.start()
    await broker.publish(
        body,
        exchange=settings.exchange,
        routing_key=EXTRACT_REQUESTED,
        content_type="application/json",
        message_id="garbled:1",
        persist=True,
    )
    dead = await get_one(dlq_name(settings, "extractor.jobs"), within=30)
    assert len(seen) == 1  # handled once, then dead-lettered: it can never succeed
    assert dead.body == body
    error = str((dead.headers or {})[ERROR_HEADER])
    assert error.startswith("malformed extract.requested message: "), error
    assert "after" not in error  # not "after N deliveries"
