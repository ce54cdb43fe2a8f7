"""Queue depths: RabbitMQ's management HTTP API when configured, else what AMQP itself tells.

AMQP (a passive queue declare) gives ready messages and consumers only: no age. The management API adds
unacknowledged messages and the age of the oldest message: exact where RabbitMQ reports it (classic
queues, `head_message_timestamp`), else a lower bound from the queue's statistics history (quorum
queues; see `queue_age`). Nothing here takes, requeues or otherwise touches a message.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika

from otn_push.status.queue_age import (
    AT_LEAST,
    AgeReading,
    arrival_bound,
    best,
    departure_bound,
    head_timestamp_age,
)
from shared.redact import redact_text, redact_url
from shared.settings import Settings
from shared.topology import QUEUES, WATCH_ROLES, dlq_name, queue_name

WORK, DEAD, WATCH = "work", "dead-letter", "watch"
AMQP_ONLY = "age unknown: AMQP only (set OTN_PUSH_MANAGEMENT_URL)"
NOT_SAMPLED = "age unknown: new queue, not yet in the management API's statistics"
# the management API's history: the recent one first (5 s samples), the longer one when the bound
# reaches back to its start (60 s samples: RabbitMQ's default retention, 10 min and 1 h)
HISTORIES = ((600, 5), (3600, 60))


@dataclass
class QueueStat:
    name: str
    role: str
    kind: str  # work | dead-letter | watch
    exists: bool = True
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    oldest_age: float | None = None  # seconds; see age_basis
    age_basis: str | None = None  # "exact" | "at least" (a lower bound) | None: unknown or empty
    age_note: str | None = None  # why the age is unknown
    source: str = "amqp"

    @property
    def empty(self) -> bool:
        return self.ready == 0 and self.unacked == 0


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
            stat.age_note = AMQP_ONLY
            stat.source = "amqp"
    finally:
        await conn.close()


def vhost(settings: Settings) -> str:
    path = urlsplit(settings.amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class ManagementUnavailable(ConnectionError):
    """The management API did not answer (or refused us): AMQP can still tell ready messages and consumers."""


def management_request(base_url: str, path: str, timeout: float = 5.0) -> tuple[Any, float | None]:
    """GET a management API path with the URL's credentials as basic auth.

    Returns (JSON or None on 404, the server's clock from its Date header when it sent one).
    """
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{host}:{parts.port}" if parts.port else host
    url = urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/") + path))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    shown = redact_url(url.split("?", 1)[0])
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body, date = response.read(), response.headers.get("Date")
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None, None
        raise ManagementUnavailable(f"management API {shown}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise ManagementUnavailable(f"management API {shown}: {redact_text(str(exc))}") from None
    try:
        return json.loads(body), _server_time(date)
    except ValueError:
        # a web server, a proxy's login page or RabbitMQ's own UI path: the address is not the API's
        raise ManagementUnavailable(
            f"management API {shown}: answered {kind}, not JSON (is this the management API's address?)"
        ) from None


def management_get(base_url: str, path: str, timeout: float = 5.0) -> Any:
    """GET a management API path with the URL's credentials as basic auth; JSON, or None on 404."""
    return management_request(base_url, path, timeout)[0]


def _server_time(date: str | None) -> float | None:
    # the samples carry the broker's clock: ages are measured on it, not on this machine's
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def _history_query(age: int, increment: int) -> str:
    return f"?lengths_age={age}&lengths_incr={increment}&msg_rates_age={age}&msg_rates_incr={increment}"


def queue_age(stat: QueueStat, doc: Any, fetch: Any, now: float) -> AgeReading:
    """The oldest message's age from the queue document, fetching the longer history with
    `fetch(query) -> doc` when the recent one is not enough (see `queue_age`'s module doc)."""
    exact = head_timestamp_age(doc, now)
    if exact is not None:
        return exact
    bound = departure_bound if stat.kind == DEAD else arrival_bound
    readings = [bound(doc, HISTORIES[0][1])]
    if readings[0].reaches_window_start:
        longer = fetch(_history_query(*HISTORIES[1]))
        if longer is not None:
            readings.append(bound(longer, HISTORIES[1][1]))
    return best(readings)


def read_management(settings: Settings, queues: list[QueueStat], now: float | None = None) -> None:
    """Fill every stat from the management API; `now` overrides the broker's clock (for tests)."""
    assert settings.management_url is not None
    base = settings.management_url
    host = quote(vhost(settings), safe="")
    # a URL that answers but is no management API (wrong port, a proxy's prefix) would make every queue
    # look missing: ask for the vhost first, which must exist since AMQP uses it
    if management_request(base, f"/api/vhosts/{host}")[0] is None:
        raise ManagementUnavailable(
            f"management API {redact_url(base)}: no vhost {vhost(settings)!r} there (is this the "
            "management API's address?)"
        )
    for stat in queues:
        path = f"/api/queues/{host}/{quote(stat.name, safe='')}"
        doc, server_now = management_request(base, path + _history_query(*HISTORIES[0]))
        if doc is None:
            stat.exists = False
            continue
        if "messages_ready" not in doc:
            # a queue declared moments ago has no statistics until the broker's next sample: reading
            # its absent counts as 0 would show a busy queue empty and without consumers
            stat.source = "unsampled"
            continue
        stat.ready = int(doc.get("messages_ready") or 0)
        stat.unacked = int(doc.get("messages_unacknowledged") or 0)
        stat.consumers = int(doc.get("consumers") or 0)
        stat.source = "management"

        def fetch(query: str, path: str = path) -> Any:
            return management_request(base, path + query)[0]

        clock = now if now is not None else server_now if server_now is not None else time.time()
        reading = queue_age(stat, doc, fetch, clock)
        stat.oldest_age, stat.age_basis = reading.seconds, reading.basis
        stat.age_note = None if stat.empty else reading.note


async def read_queues(settings: Settings, amqp_only: bool = False) -> list[QueueStat]:
    queues = expected_queues(settings)
    if settings.management_url and not amqp_only:
        await asyncio.to_thread(read_management, settings, queues)
        unsampled = [q for q in queues if q.source == "unsampled"]
        if unsampled:
            await read_amqp(settings, unsampled)
            for stat in unsampled:
                stat.age_note = NOT_SAMPLED if stat.ready else None
    else:
        await read_amqp(settings, queues)
    return queues


def queue_flags(queues: list[QueueStat], settings: Settings) -> list[str]:
    flags = []
    missing = [q for q in queues if not q.exists]
    if missing:
        example = next((q for q in missing if q.kind != DEAD), missing[0]).name
        flags.append(
            f"{len(missing)} of {len(queues)} queues do not exist, e.g. {example}: no service has started "
            f"on the exchange {settings.exchange} (OTN_PUSH_EXCHANGE; the demo's is otn.push.demo)"
        )
    for q in queues:
        if not q.exists:
            continue
        ready = q.ready or 0
        if q.kind == DEAD and ready + (q.unacked or 0) > 0:
            since = f", the oldest for {age_words(q)}" if q.oldest_age is not None else ""
            flags.append(f"dead-letter queue {q.name} holds {ready} message(s){since} (see `otn-push dlq`)")
        if q.kind == WORK and ready > 0 and not q.consumers:
            flags.append(f"queue {q.name} has {ready} message(s) and no consumer")
        if q.kind == WORK and ready > settings.status_max_ready:
            flags.append(f"queue {q.name} has {ready} ready messages (> {settings.status_max_ready})")
        if q.kind == WORK and q.oldest_age is not None and q.oldest_age > settings.status_max_message_age:
            flags.append(
                f"queue {q.name}: oldest message waits {age_words(q)} "
                f"(> {settings.status_max_message_age:.0f}s)"
            )
    return flags


def age_words(q: QueueStat) -> str:
    assert q.oldest_age is not None
    return ("at least " if q.age_basis == AT_LEAST else "") + f"{q.oldest_age:.0f}s"
