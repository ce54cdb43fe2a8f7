"""The CLI and the scheduler as real processes: list add/show, push start --wait, push status --json."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from shared.nodeschema import L, P
from shared.settings import Settings
from tests.integration.conftest import Rabbit

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from otn_push.cli import main; main()"]


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    env.update(
        {
            "OTN_PUSH_NODES": ";".join(f"{k}={v}" for k, v in settings.nodes.items()),
            "OTN_PUSH_HOME_NODE": settings.home_node,
            "OTN_PUSH_DATABASE_URL": settings.own_database_url,
            "OTN_PUSH_AMQP_URL": settings.amqp_url,
            "OTN_PUSH_EXCHANGE": settings.exchange,
            "OTN_PUSH_STAGING_DIR": str(settings.staging_dir),
            "OTN_PUSH_AUTO_PUSH": "false",
            "COLUMNS": "200",
        }
    )
    return env


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_list_and_push_commands_with_the_scheduler_process(
    make_nodes, make_settings, rabbit: Rabbit
) -> None:
    nodes = await make_nodes("OTN", "ACT")
    conn = await asyncpg.connect(nodes["ACT"])
    try:
        await conn.execute(f"INSERT INTO {P.table} ({P.code}, {P.node}) VALUES ('SERC1', 'ACT')")
    finally:
        await conn.close()
    settings: Settings = make_settings(nodes=nodes, home_node="OTN")
    rabbit.track(settings)
    env = environment(settings)

    code, out, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "NOPE,2022,t")
    assert code == 1 and "unknown project(s) NOPE" in err
    code, out, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "SERC1,2017", "serc1,2017,q")
    assert code == 1 and "expected 3" in err and "nothing added" in err
    # a prefix naming another node than the project's is refused, not silently removed
    code, out, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "OTN.SERC1,2017,q")
    assert code == 1 and "'OTN.SERC1,2017,q': prefix OTN but project SERC1 is on node ACT" in err, err
    assert "removed" not in out and "nothing added" in err
    code, out, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "serc1,2017,q")
    assert code == 0, err
    assert "upper-cased" in out and "added 1 row(s)" in out
    conn = await asyncpg.connect(nodes["OTN"])
    try:
        # a row as people write them: it must be refused by the scheduler with its reason
        await conn.execute(
            f"INSERT INTO {L.table} ({L.detection_extract}, {L.push_date}) VALUES ($1, $2)",
            "SERC1,17,q",
            dt.date(2022, 10, 20),
        )
        await conn.execute(
            f"INSERT INTO {L.table} ({L.detection_extract}, {L.push_date}) VALUES ($1, $2)",
            "[bold]SERC1[/],2017,q",
            dt.date(2022, 10, 20),
        )
    finally:
        await conn.close()

    code, out, err = await cli(env, "push", "status", "--push-date", "2022-10-20", "--json")
    assert code == 4 and json.loads(out)["run"] is None

    scheduler = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scheduler", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        code, out, err = await cli(env, "push", "start", "--push-date", "2022-10-20")
        assert code == 0 and "sent to the scheduler" in out, err

        async def status() -> dict:  # type: ignore[type-arg]
            code, out, _err = await cli(env, "push", "status", "--push-date", "2022-10-20", "--json")
            return json.loads(out) if code == 0 else {}

        doc = {}
        for _ in range(200):
            doc = await status()
            if doc.get("jobs"):
                break
            await asyncio.sleep(0.2)
        assert doc["run"]["state"] == "running"
        assert [(j["extract"], j["state"], j["node"]) for j in doc["jobs"]] == [
            ("SERC1,2017,q", "extracting", "ACT")
        ]
        assert any("'SERC1,17,q'" in w and "impossible" in w for w in doc["run"]["warnings"])

        assert any(
            "'[bold]SERC1[/],2017,q'" in w and "characters other than" in w for w in doc["run"]["warnings"]
        )
        code, out, err = await cli(env, "push", "status", "--push-date", "2022-10-20")
        assert code == 0, err
        assert "SERC1,2017,q" in out and "extracting" in out and "[bold]SERC1[/],2017,q" in out

        # no extractor runs here, so the job waits: --wait gives up after --timeout
        code, out, err = await cli(
            env, "push", "start", "--push-date", "2022-10-20", "--wait", "--timeout", "2"
        )
        assert code == 3 and "not finished" in err
        # an empty list: nothing to do, the push ends at once and says so
        code, out, err = await cli(
            env, "push", "start", "--push-date", "2023-06-15", "--wait", "--timeout", "60"
        )
        assert code == 0, err
        assert "has no rows to do" in out
    finally:
        scheduler.send_signal(signal.SIGTERM)
        _, scheduler_err = await asyncio.wait_for(scheduler.communicate(), 60)
    assert scheduler.returncode == 0, scheduler_err.decode()[-2000:]

    code, out, err = await cli(env, "list", "show", "--push-date", "2022-10-20")
    assert code == 0 and "SERC1,2017,q" in out and "3 row(s), 0 completed" in out
    assert "[bold]SERC1[/],2017,q" in out
