"""Queue depths: RabbitMQ's management HTTP API when configured, else what AMQP itself tells.

AMQP (a passive queue declare) gives ready messages and consumers only; the management API adds
unacknowledged messages and, where RabbitMQ tracks it, the age of the oldest message
(`head_message_timestamp`, classic queues with timestamped messages).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika

from shared.redact import redact_text, redact_url
from shared.settings import Settings
from shared.topology import QUEUES, WATCH_ROLES, dlq_name, queue_name

WORK, DEAD, WATCH = "work", "dead-letter", "watch"


@dataclass
class QueueStat:
    name: str
    role: str
    kind: str  # work | dead-letter | watch
    exists: bool = True
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    oldest_age: float | None = None  # seconds
    source: str = "amqp"


def expected_queues(settings: Settings) -> list[QueueStat]:
    """Every queue of the topology: each role's work queue (or watch queue) and its dead-letter queue."""
    found = []
    for role in QUEUES:
        kind = WATCH if role in WATCH_ROLES else WORK
        found.append(QueueStat(queue_name(settings, role), role, kind))
        if role not in WATCH_ROLES:
            found.append(QueueStat(dlq_name(settings, role), role, DEAD))
    return found


async def read_amqp(settings: Settings, queues: list[QueueStat]) -> None:
    """Fill ready and consumers by a passive declare per queue (a missing queue: exists = False)."""
    conn = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        for stat in queues:
            channel = await conn.channel()
            try:
                declared = await channel.declare_queue(stat.name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                stat.exists = False
                continue
            finally:
                if not channel.is_closed:
                    await channel.close()
            result = declared.declaration_result
            stat.ready = int(result.message_count or 0)
            stat.consumers = int(result.consumer_count or 0)
            stat.source = "amqp"
    finally:
        await conn.close()


def vhost(settings: Settings) -> str:
    path = urlsplit(settings.amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def management_get(base_url: str, path: str, timeout: float = 5.0) -> Any:
    """GET a management API path with the URL's credentials as basic auth; JSON, or None on 404."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{host}:{parts.port}" if parts.port else host
    url = urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/") + path))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ConnectionError(f"management API {redact_url(url)}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"management API {redact_url(url)}: {redact_text(str(exc))}") from None


def read_management(settings: Settings, queues: list[QueueStat], now: float | None = None) -> None:
    assert settings.management_url is not None
    now = time.time() if now is None else now
    host = quote(vhost(settings), safe="")
    for stat in queues:
        doc = management_get(settings.management_url, f"/api/queues/{host}/{quote(stat.name, safe='')}")
        if doc is None:
            stat.exists = False
            continue
        stat.ready = int(doc.get("messages_ready") or 0)
        stat.unacked = int(doc.get("messages_unacknowledged") or 0)
        stat.consumers = int(doc.get("consumers") or 0)
        head = doc.get("head_message_timestamp")
        stat.oldest_age = max(0.0, now - float(head)) if isinstance(head, int | float) else None
        stat.source = "management"


async def read_queues(settings: Settings) -> list[QueueStat]:
    queues = expected_queues(settings)
    if settings.management_url:
        await asyncio.to_thread(read_management, settings, queues)
    else:
        await read_amqp(settings, queues)
    return queues


def queue_flags(queues: list[QueueStat], settings: Settings) -> list[str]:
    flags = []
    missing = [q.name for q in queues if not q.exists and q.kind != DEAD]
    if missing:
        flags.append(
            f"{len(missing)} queue(s) do not exist, e.g. {missing[0]}: "
            "no service has started on this exchange"
        )
    for q in queues:
        if not q.exists:
            continue
        ready = q.ready or 0
        if q.kind == DEAD and ready + (q.unacked or 0) > 0:
            flags.append(f"dead-letter queue {q.name} holds {ready} message(s) (see `otn-push dlq`)")
        if q.kind == WORK and ready > 0 and not q.consumers:
            flags.append(f"queue {q.name} has {ready} message(s) and no consumer")
        if q.kind == WORK and ready > settings.status_max_ready:
            flags.append(f"queue {q.name} has {ready} ready messages (> {settings.status_max_ready})")
        if q.kind == WORK and q.oldest_age is not None and q.oldest_age > settings.status_max_message_age:
            flags.append(
                f"queue {q.name}: oldest message waits {q.oldest_age:.0f}s "
                f"(> {settings.status_max_message_age:.0f}s)"
            )
    return flags
