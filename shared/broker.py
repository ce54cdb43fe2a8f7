"""The RabbitMQ broker every service and the CLI use, and the one way we publish.

- publisher confirms on, and `on_return_raises`: a mandatory publish that no queue takes raises
  `aio_pika.exceptions.DeliveryError` instead of vanishing;
- a robust (auto-reconnecting) aio-pika connection; a vhost in `OTN_PUSH_AMQP_URL` is honoured;
- FastStream's own log lines go through our logger, whose filter masks passwords.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError
from aiormq.exceptions import PublishError as ReturnedError
from faststream import FastStream
from faststream.rabbit import Channel, RabbitBroker
from pydantic import BaseModel, ValidationError

from shared.decoding import Undecodable
from shared.final_delivery import Rejected, final_delivery
from shared.logs import get_logger, setup_logging
from shared.migrations import MigrationError
from shared.redact import redact_text, redact_url
from shared.settings import Settings, SettingsError, load_settings, setting_warnings
from shared.topology import exchange

log = get_logger("broker")


class PublishError(RuntimeError):
    """A publish was not confirmed by the broker (unroutable, nacked, or the connection failed)."""


def make_broker(settings: Settings, **kwargs: Any) -> RabbitBroker:
    """A RabbitBroker with confirms, unroutable-raises and reconnection; `kwargs` go to RabbitBroker."""
    options: dict[str, Any] = {
        "default_channel": Channel(publisher_confirms=True, on_return_raises=True),
        "reconnect_interval": 2.0,
        # SIGTERM: the handler in hand may finish this long; after that its message is handed back
        "graceful_timeout": settings.shutdown_grace,
        "middlewares": [final_delivery(settings, lambda: broker)],
        "logger": get_logger("faststream"),
        "log_level": logging.INFO,
        "specification_url": redact_url(settings.amqp_url),
    }
    options.update(kwargs)
    broker = RabbitBroker(settings.amqp_url, **options)
    return broker


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    payload = message.model_dump(mode="json") if isinstance(message, BaseModel) else message
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def publish(
    broker: RabbitBroker,
    settings: Settings,
    routing_key: str,
    message: BaseModel | dict[str, Any],
    message_id: str,
) -> None:
    """Publish persistently and mandatorily to the exchange, waiting for the broker's confirm.

    Raises PublishError when the message is unroutable (no queue bound for the key) or not confirmed.
    """
    try:
        confirm = await broker.publish(
            encode(message),
            exchange=exchange(settings),
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            message_id=message_id,
            correlation_id=message_id,
            content_type="application/json",
            message_type=routing_key,
            # the publish time: RabbitMQ's head_message_timestamp (classic queues) and `dlq list` read it
            timestamp=dt.datetime.now(dt.UTC),
            timeout=30.0,
        )
    except ReturnedError as exc:
        reason = getattr(exc.frame, "reply_text", None) or "returned by the broker"
        raise PublishError(f"{routing_key} {message_id}: not delivered to any queue ({reason})") from None
    except DeliveryError as exc:
        kind = type(exc.frame).__name__
        raise PublishError(f"{routing_key} {message_id}: the broker refused the message ({kind})") from None
    except TimeoutError:
        raise PublishError(f"{routing_key} {message_id}: no confirm from the broker in time") from None
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        raise PublishError(
            f"{routing_key} {message_id}: broker error {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        ) from None
    if confirm is None:
        raise PublishError(f"{routing_key} {message_id}: publisher confirms are off on this channel")
    log.debug("published %s %s", routing_key, message_id)


async def publish_raw(
    broker: RabbitBroker,
    settings: Settings,
    raw: Any,
    *,
    routing_key: str,
    headers: dict[str, Any],
) -> None:
    """Publish a received message's body and properties, with `headers`, to the dead-letter exchange.

    Persistent, mandatory and confirmed like `publish`; raises PublishError otherwise.
    """
    from shared.topology import dead_letter_exchange

    try:
        confirm = await broker.publish(
            raw.body,
            exchange=dead_letter_exchange(settings),
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            headers=headers,
            message_id=raw.message_id,
            correlation_id=raw.correlation_id,
            content_type=raw.content_type or "application/json",
            message_type=raw.type,
            timestamp=dt.datetime.now(dt.UTC),  # when it was dead-lettered, not first published
            timeout=30.0,
        )
    except (ReturnedError, DeliveryError, TimeoutError, AMQPError, ChannelInvalidStateError, OSError) as exc:
        raise PublishError(
            f"{routing_key}: dead-letter publish failed: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        ) from None
    if confirm is None:
        raise PublishError(f"{routing_key}: publisher confirms are off on this channel")


M = TypeVar("M", bound=BaseModel)


def parse_or_reject(model: type[M], body: Any, routing_key: str) -> M:
    """Validate a message body; a malformed one can never succeed, so it is dead-lettered at once."""
    if isinstance(body, Undecodable):
        raise Rejected(f"malformed {routing_key} message: not JSON: {body.reason}"[:500])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        problem = errors[0]["msg"] if errors else str(exc)
        raise Rejected(f"malformed {routing_key} message: {where or 'body'}: {problem}") from None


class StartupError(Exception):
    """A service cannot start (a store refusing its account, …): one line, exit code 1."""


def run_service(name: str, build: Callable[[Settings], FastStream]) -> int:
    """`python -m services.<name>`: settings read once (a bad one exits with one line), then run."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"otn-push {name}: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings, name)
    for line in setting_warnings():
        log.warning("%s", line)
    try:
        app = build(settings)
    except SettingsError as exc:  # a setting only the service itself can check (addresses, templates)
        print(f"otn-push {name}: {redact_text(str(exc), settings.secrets())}", file=sys.stderr)
        return 2
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        return 0
    except (MigrationError, StartupError) as exc:
        print(f"otn-push {name}: cannot start: {redact_text(str(exc), settings.secrets())}", file=sys.stderr)
        return 1
    except (OSError, ConnectionError, AMQPError) as exc:
        message = redact_text(str(exc) or type(exc).__name__, settings.secrets())
        where = f"RabbitMQ at {redact_url(settings.amqp_url)}: " if isinstance(exc, AMQPError) else ""
        print(f"otn-push {name}: cannot start: {where}{type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Faults worth retrying: a database, node or broker briefly away, or a lost concurrent-update race."""
    from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

    from shared.nodes import NodeUnavailable

    if isinstance(exc, NodeUnavailable | PublishError | ConnectionError | OSError | TimeoutError | AMQPError):
        return True
    if isinstance(exc, OperationalError | InterfaceError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        name = type(exc.orig).__name__ if exc.orig is not None else ""
        return bool(exc.connection_invalidated) or name in {"SerializationError", "DeadlockDetectedError"}
    return False


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    base_delay: float,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying transient faults with exponential backoff; the last fault is raised."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            delay = base_delay * 2 ** (attempt - 1)
            log.warning(
                "%s: %s: %s; retry %d/%d in %.1fs",
                what,
                type(exc).__name__,
                redact_text(str(exc).splitlines()[0] if str(exc) else ""),
                attempt,
                attempts - 1,
                delay,
            )
            await sleep(delay)
