"""Connections to the node databases (asyncpg, for COPY and bulk work) and their schema."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.nodeschema import ddl, partition_ddl
from shared.redact import redact_url


class NodeUnavailable(ConnectionError):
    """A node database cannot be reached; the message names the node, never its password."""

    def __init__(self, node: str, url: str, cause: BaseException) -> None:
        super().__init__(f"node {node} database unreachable ({redact_url(url)}): {why_unreachable(cause)}")
        self.node = node


def why_unreachable(cause: BaseException) -> str:
    """The cause in words a node manager reads (`database "otn" does not exist`), then its type."""
    name = type(cause).__name__
    if isinstance(cause, asyncpg.PostgresError):
        words = str(cause).strip()  # the server's own message: it never holds the password
    elif isinstance(cause, socket.gaierror):
        words = "unknown host"
    elif isinstance(cause, TimeoutError):
        words = "no answer in time"
    elif isinstance(cause, ConnectionRefusedError):
        words = "connection refused"
    elif isinstance(cause, OSError):
        words = cause.strerror or str(cause)[:200]
    else:
        return name
    return f"{words} ({name})" if words else name


def asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs (`postgresql+asyncpg://`) as well as plain libpq ones."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql+asyncpg"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def connect(node: str, url: str, connect_timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(asyncpg_dsn(url), timeout=connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise NodeUnavailable(node, url, exc) from None


@asynccontextmanager
async def connection(node: str, url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(node, url)
    try:
        yield conn
    finally:
        await conn.close()


async def ensure_database(node: str, url: str) -> bool:
    """Create the node's database when it does not exist (demo and tests). True if it was created."""
    name = database_name(url)
    maintenance = urlunsplit(urlsplit(asyncpg_dsn(url))._replace(path="/postgres"))
    async with connection(node, maintenance) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True


async def init_schema(conn: asyncpg.Connection) -> None:
    """Create the OTN-style schema (idempotent); concurrent callers are serialised by an advisory lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('otn_push.nodeschema'))")
        for statement in ddl():
            await conn.execute(statement)


async def ensure_partitions(conn: asyncpg.Connection, years: Iterable[int]) -> None:
    for year in sorted(set(years)):
        await conn.execute(partition_ddl(year))
