"""What a fresh user found in `otn-push push start|status` (CLI as a process, real PostgreSQL/RabbitMQ)."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
from sqlalchemy import select

from shared.db import PushRun, make_engine, make_sessionmaker
from shared.migrations import upgrade_async
from shared.nodes import ensure_database
from shared.settings import Settings
from tests.conftest import PG_ADMIN, pg_url
from tests.integration.conftest import Rabbit
from tests.integration.test_scheduler_cli import cli, environment

pytestmark = pytest.mark.integration

PUSH = dt.date(2025, 6, 12)


async def own_schema_exists(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = 'otn_push'"))
    finally:
        await conn.close()


async def test_push_status_reads_only_and_names_what_is_wrong(make_nodes, make_settings) -> None:
    nodes = await make_nodes("OTN")
    fresh = pg_url(f"otn_push_test_{uuid.uuid4().hex[:10]}_fresh")
    await ensure_database("fresh", fresh)
    try:
        env = environment(make_settings(nodes=nodes, database_url=fresh))
        code, out, err = await cli(env, "push", "status", "--push-date", PUSH.isoformat())
        assert code == 1 and "no otn-push tables yet" in err and "otn-push db upgrade" in err
        assert not await own_schema_exists(fresh)  # a read command wrote nothing

        # nothing listens on port 1: unreachable, naming the host, never the password
        env["OTN_PUSH_DATABASE_URL"] = "postgresql://otnpush:s3cret-pw@127.0.0.1:1/otn"
        code, out, err = await cli(env, "push", "status", "--push-date", PUSH.isoformat())
        assert code == 1 and "127.0.0.1:1/otn is unreachable" in err and "migrated" not in err
        assert "s3cret-pw" not in err + out
        code, out, err = await cli(env, "db", "upgrade")
        assert code == 1 and "unreachable" in err and "s3cret-pw" not in err + out

        # tables migrated by a newer otn-push: upgrading otn-push is the advice, not `db upgrade`
        env["OTN_PUSH_DATABASE_URL"] = fresh
        await upgrade_async(fresh)
        admin = await asyncpg.connect(fresh)
        try:
            await admin.execute("UPDATE otn_push.alembic_version SET version_num = 'f00dfeed9999'")
        finally:
            await admin.close()
        for args in (["push", "status", "--push-date", PUSH.isoformat()], ["db", "upgrade"]):
            code, out, err = await cli(env, *args)
            assert code == 1 and "is at revision f00dfeed9999, which this otn-push does not know" in err, err
            assert "upgrade otn-push" in err and "run `otn-push db upgrade`" not in err
            assert "Traceback" not in err

        # a home node without the OTN-style schema: `list` says so in one line
        env = environment(make_settings(nodes={"OTN": fresh}, database_url=fresh))
        for args in (["show"], ["add", "HFX,2025,q"]):
            code, out, err = await cli(env, "list", *args, "--push-date", PUSH.isoformat())
            assert code == 1 and "has no extract list table" in err and "otn-push nodes init" in err, err
            assert "Traceback" not in err
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()


async def record_run(url: str, state: str, fmt: str, day: dt.date = PUSH) -> None:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            run = (
                await session.execute(select(PushRun).where(PushRun.push_date == day))
            ).scalar_one_or_none()
            if run is None:
                session.add(PushRun(push_date=day, format=fmt, state=state, requested_by="test", warnings=[]))
            else:
                run.state, run.format = state, fmt
    finally:
        await engine.dispose()


async def test_push_start_with_another_format_is_refused_while_running_and_repushes_after(
    make_nodes, make_settings, own_db: str, rabbit: Rabbit
) -> None:
    nodes = await make_nodes("OTN")
    settings: Settings = make_settings(nodes=nodes)
    rabbit.track(settings)
    env = environment(settings)
    await record_run(own_db, "running", "2025")
    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat(), "--format", "legacy")
    assert code == 1 and "running in format 2025" in err and "--format legacy" in err
    assert "sent to the scheduler" not in out

    # resuming without --format keeps the push's format, whatever OTN_PUSH_EXTRACT_FORMAT says
    await record_run(own_db, "failed", "legacy")
    env["OTN_PUSH_EXTRACT_FORMAT"] = "2025"
    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat())
    assert code == 0, err
    assert "format legacy" in out and "re-push" not in out

    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat(), "--format", "2025")
    assert code == 0, err
    assert "re-push" in out and "every extract" in out and "format 2025" in out


async def test_push_start_says_what_is_wrong_with_the_broker(
    make_nodes, make_settings, rabbit: Rabbit
) -> None:
    nodes = await make_nodes("OTN")
    settings: Settings = make_settings(nodes=nodes)
    rabbit.track(settings)
    env = environment(settings)
    env["OTN_PUSH_AMQP_URL"] = "amqp://guest:guest@127.0.0.1:5672/otn-push-no-such-vhost-" + uuid.uuid4().hex
    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat())
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "vhost 'otn-push-no-such-vhost-" in err and "guest:guest" not in err

    # no scheduler runs: --wait says so and gives up instead of waiting for ever
    env["OTN_PUSH_AMQP_URL"] = settings.amqp_url
    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat(), "--wait")
    assert code == 3 and "no scheduler is consuming" in err and "scheduler.commands" in err
    code, out, err = await cli(env, "push", "start", "--push-date", PUSH.isoformat())
    assert code == 0 and "sent to the scheduler" in out and "no scheduler is consuming" in err
    assert "is not a push date" not in err

    # a mistyped date is said, with the push dates around it (it is still sent: tests and re-runs use any)
    code, out, err = await cli(env, "push", "start", "--push-date", "2025-06-13")
    assert code == 0 and "2025-06-13 is not a push date (nearest: 2025-06-12 or 2025-10-16" in err


async def test_list_add_refuses_a_date_that_is_not_a_push_date_and_list_show_prints_whole_values(
    make_nodes, make_settings, own_db: str
) -> None:
    nodes = await make_nodes("OTN")
    conn = await asyncpg.connect(nodes["OTN"])
    try:
        await conn.execute("INSERT INTO obis.otn_resources (collectioncode, node) VALUES ('NSBS', 'OTN')")
    finally:
        await conn.close()
    env = environment(make_settings(nodes=nodes))
    code, out, err = await cli(env, "list", "add", "--push-date", "2025-06-19", "NSBS,2022,t")
    assert code == 1 and "2025-06-19 is not a push date" in err and "2025-06-12 or 2025-10-16" in err
    assert "nothing added" in err
    code, out, err = await cli(
        env, "list", "add", "--push-date", "2025-06-19", "--force", "--issue-link", "ticket 12", "NSBS,2022,t"
    )
    assert code == 1 and "--issue-link 'ticket 12': expected the ticket's http:// or https://" in err
    link = "https://gitlab.example.org/otn/data-issues/-/issues/" + "x" * 120
    code, out, err = await cli(
        env, "list", "add", "--push-date", "2025-06-19", "--force", "--issue-link", link, "NSBS,2022,t"
    )
    assert code == 0 and "added 1 row(s)" in out and "not a push date" in err
    assert "already ran" not in out

    # rows added to a push that already ran: say how they get built
    await record_run(own_db, "completed", "2025", dt.date(2025, 6, 19))
    code, out, err = await cli(env, "list", "add", "--push-date", "2025-06-19", "--force", "NSBS,2021,t")
    assert code == 0 and "already ran (completed)" in out and "push start --push-date 2025-06-19" in out

    # piped (stdout is not a terminal here) with no COLUMNS: whole values, one row per line
    env.pop("COLUMNS", None)
    code, out, err = await cli(env, "list", "show", "--push-date", "2025-06-19")
    assert "2 row(s), 0 completed" in out
    assert [line for line in out.splitlines() if link in line and "NSBS,2022,t" in line]
