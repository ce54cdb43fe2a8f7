"""`otn-push nodes grants`: the statements give a services account exactly what the README says: read the
node tables, set the list's completion columns on the home node, own the `otn_push` schema; nothing else."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.grants import GrantError, grant_plan, grant_script
from shared.migrations import current_revision, upgrade_async
from shared.nodes import connection
from shared.settings import Settings
from tests.conftest import PG_ADMIN, NodeFactory

pytestmark = pytest.mark.integration


@pytest.fixture
async def role() -> AsyncIterator[str]:
    name = f"otn_push_grants_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'not-used-here'")
    try:
        yield name
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


def as_role(url: str, role: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)


@pytest.mark.parametrize("admin_migrated_first", [False, True])
async def test_granted_account_reads_completes_and_migrates_but_writes_nothing_else(
    role: str, make_nodes: NodeFactory, admin_migrated_first: bool, tmp_path: Path
) -> None:  # role first: it is dropped after make_nodes dropped the databases holding its grants
    nodes = await make_nodes("OTN", "ACT")
    if admin_migrated_first:  # `otn-push db upgrade` or the demo run as the administrator before the grants
        await upgrade_async(nodes["OTN"])
    async with connection("OTN", nodes["OTN"]) as admin:
        await admin.execute(
            "INSERT INTO obis.detection_extracts_list (detection_extract, push_date) VALUES ('NSBS,2022,t', "
            "'2025-09-10')"
        )
    settings = Settings(nodes=nodes, home_node="OTN", _env_file=None)  # type: ignore[call-arg]
    plan = grant_plan(settings, role)
    assert [g.database for g in plan] == [nodes["OTN"].rsplit("/", 1)[1], nodes["ACT"].rsplit("/", 1)[1]]
    for grants in plan:
        async with connection("admin", grants.url) as admin:
            for statement in grants.statements:
                await admin.execute(statement)
    script = grant_script(settings, role)
    assert script.count("\\connect") == 2 and "GRANT UPDATE (completed, completed_date)" in script
    # the script as an administrator runs it, section by section on each database's own server
    if shutil.which("psql"):
        path = tmp_path / "grants.sql"
        path.write_text(script)
        admin_url = PG_ADMIN.rsplit("/", 1)[0] + "/postgres"
        psql = await asyncio.create_subprocess_exec(
            "psql", admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), stderr=asyncio.subprocess.PIPE
        )
        _, errors = await psql.communicate()
        assert psql.returncode == 0, errors.decode()

    home, other = as_role(nodes["OTN"], role), as_role(nodes["ACT"], role)
    await upgrade_async(home)  # the services migrate their own tables through this account
    assert await current_revision(home) is not None
    async with connection("OTN", home) as conn:
        # it owns the schema and every table in it (a later migration alters them)
        await conn.execute("CREATE TABLE otn_push.probe (a int); DROP TABLE otn_push.probe")
        for table in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'otn_push'"):
            await conn.execute(f"COMMENT ON TABLE otn_push.{table['tablename']} IS 'owned'")
        assert await conn.fetchval("SELECT count(*) FROM obis.detection_extracts_list") == 1
        await conn.execute("UPDATE obis.detection_extracts_list SET completed = true, completed_date = now()")
        await conn.execute("CREATE TEMP TABLE x (a int)")  # the extractor's lookups
        for statement in (
            "INSERT INTO obis.detection_extracts_list (detection_extract, push_date) VALUES ('X', now())",
            "UPDATE obis.detection_extracts_list SET detection_extract = 'X,2022,t'",
            "DELETE FROM obis.detection_extracts_list",
            "UPDATE obis.otn_resources SET citation = 'x'",
            "CREATE TABLE obis.mine (a int)",
            "CREATE SCHEMA elsewhere",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    async with connection("ACT", other) as conn:
        assert await conn.fetchval("SELECT count(*) FROM obis.otn_detections") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE obis.detection_extracts_list SET completed = true")


def test_a_role_name_that_is_not_plain_is_refused() -> None:
    settings = Settings(nodes={"OTN": "postgresql://h/otn"}, _env_file=None)  # type: ignore[call-arg]
    for bad in ('x"; DROP TABLE y; --', "1abc", "Upper", ""):
        with pytest.raises(GrantError, match="--role"):
            grant_plan(settings, bad)
