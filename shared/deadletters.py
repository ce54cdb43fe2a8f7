"""Dead-letter queues: see what died and why, and send it back once the cause is fixed.

Every work queue dead-letters into `<queue>.dlq` (see shared/topology.py). Listing browses each DLQ
without consuming: the messages are taken unacknowledged on one channel and handed back when it closes.

Replaying takes a message from its DLQ unacknowledged, republishes it to the exchange with its original
routing key (persistent, mandatory, confirmed by the broker) and only then acknowledges it in the DLQ.
A failed publish hands the message back to the DLQ, so nothing is lost. A crash between the confirm and
the acknowledgement leaves a copy in the DLQ as well: at worst a duplicate, which every handler is
idempotent against. Like the original publish, the replay reaches every queue bound to that routing key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import AMQPError, DeliveryError, PublishError

from shared.broker_problem import broker_problem
from shared.final_delivery import ERROR_HEADER, QUEUE_HEADER, ROUTING_KEY_HEADER
from shared.redact import redact_text
from shared.settings import Settings
from shared.topology import QUEUES, WATCH_ROLES, dlq_name, queue_name

REPLAYED_HEADER = "x-otn-replayed"
# Headers RabbitMQ (and shared/final_delivery.py) add on dead-lettering: a replayed message starts afresh.
_DEATH_HEADERS = (
    ERROR_HEADER,
    QUEUE_HEADER,
    ROUTING_KEY_HEADER,
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


class DeadLetterError(RuntimeError):
    """A dead-letter operation could not be done (unknown queue, broker unreachable, publish refused)."""


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the work queue's role, e.g. extractor.jobs
    id: str  # message id, or `sha256:<12 hex>` of the body when it has none
    routing_key: str
    business_key: str
    deaths: int
    reason: str
    first_death: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_death"] = self.first_death.isoformat() if self.first_death else None
        return data


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[DeadLetter]
    failed: list[tuple[DeadLetter, str]]


def dead_letter_roles() -> list[str]:
    return [role for role in QUEUES if role not in WATCH_ROLES]


def resolve_role(settings: Settings, name: str) -> str:
    """`extractor.jobs`, `otn-push.extractor.jobs` or its `.dlq` -> the role `extractor.jobs`."""
    for role in dead_letter_roles():
        if name in {role, queue_name(settings, role), dlq_name(settings, role)}:
            return role
    known = ", ".join(dead_letter_roles())
    raise DeadLetterError(f"--queue {name!r}: no such work queue (known: {known})")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = headers.get("x-death")
    return [d for d in value if isinstance(d, Mapping)] if isinstance(value, list) else []


def message_id(message: AbstractIncomingMessage) -> str:
    if message.message_id:
        return message.message_id
    return "sha256:" + hashlib.sha256(message.body).hexdigest()[:12]


def business_key(body: bytes) -> str:
    """`2025-09-01 NSBS,2022,t` or `2025-09-01 project NSBS`, from the message's own fields."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "(body is not JSON)"
    if not isinstance(data, dict):
        return "(body is not a JSON object)"
    parts = [str(data["push_date"])] if "push_date" in data else []
    extract = data.get("extract")
    if isinstance(extract, dict) and {"code", "year", "type"} <= extract.keys():
        parts.append(f"{extract['code']},{extract['year']},{extract['type']}")
    elif "project" in data:
        parts.append(f"project {data['project']}")
    elif isinstance(data.get("extracts"), list):
        parts.append(f"{len(data['extracts'])} listed extract(s)")
    return " ".join(parts) or "(no business key)"


def original_routing_key(role: str, message: AbstractIncomingMessage) -> str | None:
    """The routing key the message was first published with, if it is one the role's queue is bound to."""
    headers = message.headers or {}
    recorded = headers.get(ROUTING_KEY_HEADER)
    candidates: list[str] = [_text(recorded)] if recorded else []
    for death in reversed(_deaths(headers)):  # x-death is newest first
        keys = death.get("routing-keys")
        if isinstance(keys, list):
            candidates.extend(_text(k) for k in keys)
    if message.type:
        candidates.append(message.type)
    return next((key for key in candidates if key in QUEUES[role]), None)


def describe(role: str, message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    deaths = _deaths(headers)
    recorded = headers.get(ERROR_HEADER)
    # the handler's own reason (final_delivery.py) when recorded, else RabbitMQ's (`delivery_limit`, ...)
    reason = _text(recorded) if recorded else ""
    if not reason:
        first = headers.get("x-first-death-reason")
        reason = _text(first) if first else (_text(deaths[-1].get("reason", "")) if deaths else "")
    times = [d["time"] for d in deaths if isinstance(d.get("time"), dt.datetime)]
    if not times and recorded and message.timestamp:
        times = [message.timestamp]  # final_delivery's DLQ copy is stamped when it is published
    first_death = min(times) if times else None
    if first_death is not None and first_death.tzinfo is None:
        first_death = first_death.replace(tzinfo=dt.UTC)
    count = max(sum(int(d.get("count", 1)) for d in deaths), 1 if recorded else 0)
    return DeadLetter(
        queue=role,
        id=message_id(message),
        routing_key=original_routing_key(role, message) or message.routing_key or "",
        business_key=business_key(message.body),
        deaths=count,
        reason=redact_text(reason),
        first_death=first_death,
    )


async def _take_all(channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
    """Every message of the queue, unacknowledged (held by this channel until acked or it closes)."""
    q = await channel.get_queue(queue, ensure=True)
    taken: list[AbstractIncomingMessage] = []
    while (message := await q.get(no_ack=False, fail=False)) is not None:
        taken.append(message)
    return taken


async def _connect(settings: Settings) -> aio_pika.abc.AbstractConnection:
    try:
        return await aio_pika.connect(settings.amqp_url, timeout=30)
    except (OSError, AMQPError, TimeoutError) as exc:
        raise DeadLetterError(
            redact_text(broker_problem(settings.amqp_url, exc), settings.secrets())
        ) from None


async def _existing_roles(connection: aio_pika.abc.AbstractConnection, settings: Settings) -> list[str]:
    """The roles whose DLQ has been declared (by a service or `push start`); others hold nothing."""
    found = []
    for role in dead_letter_roles():
        channel = await connection.channel()
        try:
            await channel.declare_queue(dlq_name(settings, role), passive=True)
            found.append(role)
        except aio_pika.exceptions.ChannelClosed:
            continue
        finally:
            if not channel.is_closed:
                await channel.close()
    return found


async def list_dead_letters(settings: Settings, role: str | None = None) -> list[DeadLetter]:
    """Every dead-lettered message (of one role's DLQ, or all), oldest first per queue; none is removed."""
    connection = await _connect(settings)
    try:
        roles = [role] if role else await _existing_roles(connection, settings)
        found: list[DeadLetter] = []
        for name in roles:
            channel = await connection.channel()
            try:
                found.extend(describe(name, m) for m in await _take_all(channel, dlq_name(settings, name)))
            finally:
                await channel.close()  # hands every taken message back to its DLQ
        return found
    finally:
        await connection.close()


async def replay_dead_letters(
    settings: Settings, *, role: str | None = None, ids: set[str] | None = None
) -> ReplayResult:
    """Send dead letters back (those with an id in `ids`, or all when `ids` is None); see module doc."""
    connection = await _connect(settings)
    replayed: list[DeadLetter] = []
    failed: list[tuple[DeadLetter, str]] = []
    try:
        roles = [role] if role else await _existing_roles(connection, settings)
        for name in roles:
            source = await connection.channel()
            target = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                exchange = await target.get_exchange(settings.exchange, ensure=True)
                for message in await _take_all(source, dlq_name(settings, name)):
                    letter = describe(name, message)
                    if ids is not None and letter.id not in ids:
                        continue
                    problem = await _republish(exchange, name, message)
                    if problem:
                        failed.append((letter, problem))
                    else:
                        await message.ack()
                        replayed.append(letter)
            finally:
                await target.close()
                await source.close()  # whatever was not acked goes back to the DLQ
    finally:
        await connection.close()
    return ReplayResult(replayed=replayed, failed=failed)


async def _republish(
    exchange: aio_pika.abc.AbstractExchange, role: str, message: AbstractIncomingMessage
) -> str | None:
    """Publish a copy to the exchange with the original routing key; None when confirmed, else why not."""
    key = original_routing_key(role, message)
    if key is None:
        return f"no original routing key of {role} recorded (bound: {', '.join(QUEUES[role])})"
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS}
    previous = headers.get(REPLAYED_HEADER)
    headers[REPLAYED_HEADER] = (previous if isinstance(previous, int) else 0) + 1
    copy = aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=dt.datetime.now(dt.UTC),  # back in the work queue now: its age there starts again
        type=message.type,
        app_id=message.app_id,
    )
    try:
        await exchange.publish(copy, routing_key=key, mandatory=True, timeout=30)
    except PublishError:
        return f"{key}: not delivered to any queue (returned by the broker)"
    except DeliveryError as exc:
        return f"{key}: the broker refused the message ({type(exc.frame).__name__})"
    except (TimeoutError, AMQPError, ConnectionError) as exc:
        return f"{key}: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
    return None
