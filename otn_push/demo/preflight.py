"""Before the demo: are PostgreSQL and RabbitMQ reachable? One line saying which is not, and how to start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import aio_pika
import asyncpg
from aio_pika.connection import make_url

from shared.nodes import asyncpg_dsn
from shared.settings import Settings

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_RABBITMQ = "rabbitmq-server -detached"


def _where(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


async def _postgres_problem(url: str, wait: float) -> str | None:
    maintenance = urlsplit(asyncpg_dsn(url))._replace(path="/postgres").geturl()
    try:
        conn = await asyncpg.connect(maintenance, timeout=wait)
    except (OSError, TimeoutError):
        return f"PostgreSQL is not reachable at {_where(url, 5432)}"
    except asyncpg.PostgresError as exc:
        return f"PostgreSQL at {_where(url, 5432)} refused the connection ({type(exc).__name__})"
    await conn.close()
    return None


async def _rabbitmq_problem(url: str, wait: float) -> str | None:
    # built by hand rather than aio_pika.connect(), so that a failed attempt is closed, not left to the GC
    connection = aio_pika.Connection(make_url(url))
    try:
        await asyncio.wait_for(connection.connect(timeout=wait), wait + 1)
    except (OSError, TimeoutError, ConnectionError):
        return f"RabbitMQ is not reachable at {_where(url, 5672)}"
    except Exception as exc:  # authentication, vhost: aiormq raises its own types
        return f"RabbitMQ at {_where(url, 5672)} refused the connection ({type(exc).__name__})"
    finally:
        with suppress(Exception):
            await connection.close()
    return None


async def _nothing() -> None:
    return None


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The client libraries log each failed attempt; the pre-flight says it once, itself."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def preflight(settings: Settings, *, rabbitmq: bool = True, wait: float = 3.0) -> str | None:
    """None when every node database server (and the broker) answer, else one line saying what to do."""
    servers = {_where(url, 5432): url for url in settings.nodes.values()}
    checks = [_postgres_problem(url, wait) for url in servers.values()]
    broker = _rabbitmq_problem(settings.amqp_url, wait) if rabbitmq else _nothing()
    with _quiet("aiormq", "aio_pika", "asyncpg"):
        results = await asyncio.gather(*checks, broker)
    pg_problems = [p for p in results[:-1] if p]
    rabbit_problem = results[-1]
    parts = []
    if pg_problems:
        hint = f" (start it: {START_POSTGRES})" if "not reachable" in pg_problems[0] else ""
        parts.append("; ".join(pg_problems) + hint)
    if rabbit_problem:
        hint = f" (start it: {START_RABBITMQ})" if "not reachable" in rabbit_problem else ""
        parts.append(rabbit_problem + hint)
    return "; ".join(parts) or None
