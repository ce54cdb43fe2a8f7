"""What the CLI says about RabbitMQ: one line for a broker it cannot use, and whether a scheduler listens."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import aio_pika
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelNotFoundEntity,
    InvalidFrameError,
    ProbableAuthenticationError,
)

from shared.redact import redact_text, redact_url
from shared.settings import Settings
from shared.topology import queue_name

COMMAND_QUEUE_ROLE = "scheduler.commands"


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_problem(url: str, exc: BaseException) -> str:
    """One line (no password) saying why the broker at `url` cannot be used."""
    where = redact_url(url)
    if isinstance(exc, InvalidFrameError | ProbableAuthenticationError):
        # RabbitMQ closes the connection while opening it: unknown vhost, or a user without access to it
        return (
            f"RabbitMQ at {where} refused the connection: does the vhost {_vhost(url)!r} exist, and may "
            "this user use it (and is the password right)? (OTN_PUSH_AMQP_URL)"
        )
    if isinstance(exc, OSError | AMQPConnectionError | TimeoutError | ConnectionError):
        detail = redact_text(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        return f"RabbitMQ at {where} is unreachable ({detail}); is it running? (OTN_PUSH_AMQP_URL)"
    detail = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])
    return f"cannot use RabbitMQ at {where}: {detail}"


async def command_consumers(cfg: Settings) -> int:
    """Consumers on the scheduler's command queue (0: no scheduler is running for this exchange)."""
    connection = await aio_pika.connect(cfg.amqp_url)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(queue_name(cfg, COMMAND_QUEUE_ROLE), passive=True)
        except ChannelNotFoundEntity:
            return 0
        return queue.declaration_result.consumer_count or 0
    finally:
        await connection.close()


async def scheduler_listening(cfg: Settings, checks: int = 5, interval: float = 1.0) -> bool:
    """True once a scheduler consumes the command queue; a few checks allow for one that is restarting."""
    for attempt in range(checks):
        if await command_consumers(cfg) > 0:
            return True
        if attempt < checks - 1:
            await asyncio.sleep(interval)
    return False
