"""Alembic migrations of otn-push's own tables (schema `otn_push`); `upgrade(url)` brings a DB to head.

Every service and the CLI call `upgrade` at start (idempotent; concurrent callers are serialised by an
advisory lock), so a fresh database needs no manual step; `otn-push db upgrade` does the same by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from shared.db import OWN_SCHEMA, make_engine
from shared.redact import redact_text, redact_url

HERE = Path(__file__).resolve().parent
LOCK = "hashtext('otn_push.migrations')"


class MigrationError(RuntimeError):
    """The own database cannot be migrated; the message says what to run and never holds a password."""


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_table_schema", OWN_SCHEMA)
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether this otn-push's migrations hold `revision` (a newer otn-push may have made one it lacks)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic's ResolutionError and friends: not one of ours
        return False


def newer_revision_message(where: str, revision: str) -> str:
    return (
        f"own database {where} is at revision {revision}, which this otn-push does not know: a newer "
        "otn-push migrated it; upgrade otn-push (downgrading the tables is not supported)"
    )


def _upgrade_sync(connection: Any, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _current_sync(connection: Any) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": OWN_SCHEMA})
    return context.get_current_revision()


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Migrate the own tables in `url` to `revision` (default head); safe to call from every process.

    Raises MigrationError (one line, no password) when the database cannot be reached or migrated.
    """
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK})"))
            # only when missing: IF NOT EXISTS still needs CREATE on the database, which a least-privilege
            # account (README "Database accounts") lacks once its schema was made for it
            found = await conn.scalar(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": OWN_SCHEMA}
            )
            if not found:
                await conn.execute(text(f"CREATE SCHEMA {OWN_SCHEMA}"))
            current = await conn.run_sync(_current_sync)
            if current is not None and not is_known_revision(current):
                raise MigrationError(newer_revision_message(redact_url(url), current))
            await conn.run_sync(_upgrade_sync, revision)
    except MigrationError:
        raise
    except Exception as exc:
        detail = redact_text(str(exc).splitlines()[0] if str(exc) else "")
        raise MigrationError(
            f"own database {redact_url(url)} cannot be migrated ({type(exc).__name__}: {detail}); "
            "check OTN_PUSH_DATABASE_URL (default: the home node's database) and run `otn-push db upgrade`"
        ) from exc
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current_sync)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Synchronous `upgrade_async` for scripts and the CLI (not for use inside a running event loop)."""
    asyncio.run(upgrade_async(url, revision))
