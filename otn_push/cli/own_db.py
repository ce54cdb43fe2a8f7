"""The CLI's access to otn-push's own tables: read commands never migrate them, and errors say what is
wrong: the database unreachable (naming the host, never the password), or not migrated yet."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from otn_push.cli.common import fail
from shared.db import OWN_SCHEMA, make_engine
from shared.migrations import (
    MigrationError,
    head_revision,
    is_known_revision,
    newer_revision_message,
    upgrade_async,
)
from shared.redact import redact_text, redact_url
from shared.settings import Settings

UPGRADE_HINT = "run `otn-push db upgrade`"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and, for SQLAlchemy's wrappers, the driver's original error."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return seen


def is_unreachable(exc: BaseException) -> bool:
    """Connection refused, unknown host, timeout: the server is not there (rather than refusing us)."""
    return any(isinstance(e, OSError | TimeoutError | socket.gaierror) for e in _chain(exc))


def where(url: str) -> str:
    """`host:port/database` of a PostgreSQL URL (no user, no password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return redact_url(url)


def _reason(exc: BaseException) -> str:
    last = _chain(exc)[-1]
    detail = str(last).splitlines()[0] if str(last) else ""
    return redact_text(f"{type(last).__name__}: {detail}" if detail else type(last).__name__)


def unreachable_message(url: str, exc: BaseException) -> str:
    return (
        f"own database at {where(url)} is unreachable ({_reason(exc)}); is PostgreSQL running there? "
        "(OTN_PUSH_DATABASE_URL, default: the home node's database)"
    )


async def ensure_own_tables(cfg: Settings) -> None:
    """Migrate the own tables (for commands that write them); stop with one line saying what is wrong."""
    try:
        await upgrade_async(cfg.own_database_url)
    except MigrationError as exc:
        if is_unreachable(exc):
            fail(unreachable_message(cfg.own_database_url, exc))
        fail(str(exc))


async def _revision_of(conn: AsyncConnection) -> str | None:
    found = await conn.scalar(
        text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{OWN_SCHEMA}.alembic_version"}
    )
    if not found:
        return None
    return await conn.scalar(text(f"SELECT version_num FROM {OWN_SCHEMA}.alembic_version"))


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await _revision_of(conn)


@asynccontextmanager
async def own_tables_for_reading(cfg: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the own database, after checking (read-only) that its tables are at the latest
    revision; stops with one line when the database is unreachable or not migrated."""
    url = cfg.own_database_url
    engine = make_engine(url)
    try:
        try:
            revision = await _revision(engine)
        except Exception as exc:
            if is_unreachable(exc):
                fail(unreachable_message(url, exc))
            fail(f"own database at {where(url)}: {_reason(exc)}")
        head = head_revision()
        if revision is None:
            fail(f"own database at {where(url)} has no otn-push tables yet: {UPGRADE_HINT}")
        if revision != head and not is_known_revision(revision):
            fail(newer_revision_message(f"at {where(url)}", revision))
        if revision != head:
            fail(
                f"own database at {where(url)} is at revision {revision}, not the latest {head}: "
                + UPGRADE_HINT
            )
        yield engine
    finally:
        await engine.dispose()


async def run_state(cfg: Settings, push_date: dt.date) -> str | None:
    """The push run's state (running, completed, failed), or None when there is none or it cannot be
    read (no own tables yet): for hints only, never an error."""
    engine = make_engine(cfg.own_database_url)
    try:
        async with engine.connect() as conn:
            if await _revision_of(conn) is None:
                return None
            return await conn.scalar(
                text(f"SELECT state FROM {OWN_SCHEMA}.push_runs WHERE push_date = :d"), {"d": push_date}
            )
    except Exception:
        return None
    finally:
        await engine.dispose()
