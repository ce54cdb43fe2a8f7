"""`otn-push db upgrade|current`: otn-push's own tables (schema `otn_push`), migrated with Alembic."""

from __future__ import annotations

import typer

from otn_push.cli.common import console, fail, run, settings
from otn_push.cli.own_db import ensure_own_tables, is_unreachable, unreachable_message
from shared.migrations import current_revision, head_revision
from shared.redact import redact_url

__all__ = ["ensure_own_tables", "register"]


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="otn-push's own bookkeeping tables (push runs, jobs, outbox, emails).")
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def upgrade() -> None:
        """Create or migrate the own tables to the latest revision (safe to run again)."""
        cfg = settings()

        async def go() -> str | None:
            await ensure_own_tables(cfg)
            return await current_revision(cfg.own_database_url)

        revision = run(go())
        console.print(f"own tables in {redact_url(cfg.own_database_url)} at revision {revision}")

    @db.command("current")
    def current() -> None:
        """Show the own tables' revision and the latest one."""
        cfg = settings()
        try:
            revision = run(current_revision(cfg.own_database_url))
        except Exception as exc:
            if is_unreachable(exc):
                fail(unreachable_message(cfg.own_database_url, exc))
            fail(f"own database {redact_url(cfg.own_database_url)}: {type(exc).__name__}: {exc}")
        head = head_revision()
        state = "up to date" if revision == head else "run `otn-push db upgrade`"
        console.print(f"revision {revision or 'none'} (latest {head}): {state}")
