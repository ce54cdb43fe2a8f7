"""RabbitMQ topology: one topic exchange, one durable quorum queue per consumer, each with its DLQ.

Queue names derive from `Settings.exchange` (`otn.push` -> `otn-push.<role>`), so a test that uses a
unique exchange name gets its own queues too. Every work queue:
- is a quorum queue with `x-delivery-limit = settings.delivery_limit`: a message nacked (requeued) or
  handed back by a crashed consumer that many times is dead-lettered instead of looping forever;
- dead-letters via the direct exchange `<exchange>.dlx` into `<queue>.dlq` (routing key = queue name);
- is consumed on its own channel with `prefetch_count = settings.prefetch`.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from faststream.middlewares import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.subscriber import RabbitSubscriber

from shared.decoding import lenient_decoder
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_REQUESTED,
    EXTRACT_UPLOADED,
    PROJECT_NOTIFIED,
    PROJECT_NOTIFY_FAILED,
    PUSH_COMPLETED,
    PUSH_READY,
    PUSH_START,
)
from shared.settings import Settings

# role -> routing keys bound on the topic exchange
QUEUES: dict[str, tuple[str, ...]] = {
    "scheduler.commands": (PUSH_START,),
    "scheduler.events": (
        EXTRACT_CREATED,
        EXTRACT_UPLOADED,
        EXTRACT_FAILED,
        PROJECT_NOTIFIED,
        PROJECT_NOTIFY_FAILED,
    ),
    "extractor.jobs": (EXTRACT_REQUESTED,),
    "uploader.files": (EXTRACT_CREATED,),
    "notifier.uploads": (EXTRACT_UPLOADED, EXTRACT_FAILED),
    "notifier.push": (PUSH_COMPLETED,),  # the ops email (OTN_PUSH_OPS_EMAIL)
    # Nobody has to act on push.ready / push.completed, but publishes are mandatory (unroutable raises),
    # so they land in a bounded watch queue that keeps the most recent ones for people and tools.
    "push.events": (PUSH_READY, PUSH_COMPLETED),
}
WATCH_ROLES = frozenset({"push.events"})
WATCH_MAX_LENGTH = 10_000


def queue_prefix(settings: Settings) -> str:
    return settings.exchange.replace(".", "-")


def queue_name(settings: Settings, role: str) -> str:
    """`extractor.jobs` -> `otn-push.extractor.jobs` (for the default exchange `otn.push`)."""
    if role not in QUEUES:
        raise KeyError(f"unknown queue role {role!r}; known: {', '.join(QUEUES)}")
    return f"{queue_prefix(settings)}.{role}"


def dlq_name(settings: Settings, role: str) -> str:
    return queue_name(settings, role) + ".dlq"


def dlx_name(settings: Settings) -> str:
    return f"{settings.exchange}.dlx"


def exchange(settings: Settings) -> RabbitExchange:
    """The topic exchange every message is published to (equal objects hash alike: one declaration)."""
    return RabbitExchange(settings.exchange, type=ExchangeType.TOPIC, durable=True)


def dead_letter_exchange(settings: Settings) -> RabbitExchange:
    return RabbitExchange(dlx_name(settings), type=ExchangeType.DIRECT, durable=True)


def queue_arguments(settings: Settings, role: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": dlx_name(settings),
        "x-dead-letter-routing-key": queue_name(settings, role),
    }
    if role in WATCH_ROLES:
        args = {"x-max-length": WATCH_MAX_LENGTH, "x-overflow": "drop-head"}
    return args


def rabbit_queue(settings: Settings, role: str) -> RabbitQueue:
    keys = QUEUES[role]
    arguments: Any = queue_arguments(settings, role)
    return RabbitQueue(
        queue_name(settings, role),
        queue_type=QueueType.QUORUM,
        arguments=arguments,
        routing_key=keys[0],
    )


def dead_letter_queue(settings: Settings, role: str) -> RabbitQueue:
    return RabbitQueue(
        dlq_name(settings, role),
        queue_type=QueueType.QUORUM,
        routing_key=queue_name(settings, role),
    )


def subscriber(broker: RabbitBroker, settings: Settings, role: str) -> RabbitSubscriber:
    """A subscriber on the role's queue: bounded prefetch, ack on success, nack+requeue on error.

    A handler that raises `faststream.exceptions.RejectMessage` dead-letters the message at once (use it
    for messages that can never succeed); any other exception requeues it until the delivery limit.
    The extra routing keys of a role are bound by `declare_topology`, which the app runs at start-up.
    """
    return broker.subscriber(
        rabbit_queue(settings, role),
        exchange(settings),
        channel=Channel(prefetch_count=settings.prefetch),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=lenient_decoder,
    )


async def declare_topology(broker: RabbitBroker, settings: Settings) -> None:
    """Declare (idempotently) the exchanges, every queue with all its bindings, and every DLQ.

    Declared on a throw-away channel: FastStream caches declared queues with the channel they were
    declared on, and a subscriber must consume on its own (prefetch-limited) channel, not that one.
    """
    connection = await broker.connect()
    channel = await connection.channel()
    try:
        main = await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        dlx = await channel.declare_exchange(dlx_name(settings), aio_pika.ExchangeType.DIRECT, durable=True)
        for role, keys in QUEUES.items():
            spec = rabbit_queue(settings, role)
            queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            for key in keys:
                await queue.bind(main, routing_key=key)
            if role not in WATCH_ROLES:
                dead = dead_letter_queue(settings, role)
                dlq = await channel.declare_queue(dead.name, durable=True, arguments=dead.arguments)
                await dlq.bind(dlx, routing_key=queue_name(settings, role))
    finally:
        await channel.close()
