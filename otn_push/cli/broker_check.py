"""Whether a scheduler listens on the command queue; `broker_problem` says why a broker cannot be used."""

from __future__ import annotations

import asyncio

import aio_pika
from aiormq.exceptions import ChannelNotFoundEntity

from shared.broker_problem import broker_problem
from shared.settings import Settings
from shared.topology import queue_name

COMMAND_QUEUE_ROLE = "scheduler.commands"


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


__all__ = ["COMMAND_QUEUE_ROLE", "broker_problem", "command_consumers", "scheduler_listening"]
