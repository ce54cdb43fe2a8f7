"""The RabbitMQ broker every service and the CLI use, and the one way we publish.

- publisher confirms on, and `on_return_raises`: a mandatory publish that no queue takes raises
  `aio_pika.exceptions.DeliveryError` instead of vanishing;
- a robust (auto-reconnecting) aio-pika connection; a vhost in `OTN_PUSH_AMQP_URL` is honoured;
- FastStream's own log lines go through our logger, whose filter masks passwords.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError
from aiormq.exceptions import PublishError as ReturnedError
from faststream.rabbit import Channel, RabbitBroker
from pydantic import BaseModel

from shared.logs import get_logger
from shared.redact import redact_url
from shared.settings import Settings
from shared.topology import exchange

log = get_logger("broker")


class PublishError(RuntimeError):
    """A publish was not confirmed by the broker (unroutable, nacked, or the connection failed)."""


def make_broker(settings: Settings, **kwargs: Any) -> RabbitBroker:
    """A RabbitBroker with confirms, unroutable-raises and reconnection; `kwargs` go to RabbitBroker."""
    options: dict[str, Any] = {
        "default_channel": Channel(publisher_confirms=True, on_return_raises=True),
        "reconnect_interval": 2.0,
        "graceful_timeout": 30.0,
        "logger": get_logger("faststream"),
        "log_level": logging.INFO,
        "specification_url": redact_url(settings.amqp_url),
    }
    options.update(kwargs)
    return RabbitBroker(settings.amqp_url, **options)


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
            f"{routing_key} {message_id}: broker connection failed ({type(exc).__name__})"
        ) from None
    if confirm is None:
        raise PublishError(f"{routing_key} {message_id}: publisher confirms are off on this channel")
    log.debug("published %s %s", routing_key, message_id)
