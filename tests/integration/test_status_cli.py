"""`otn-push status` and `otn-push nodes check` as processes, on a test's own exchange and database."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import aio_pika
import pytest
from rich.console import Console
from sqlalchemy import insert

from otn_push.cli.status_cmd import render
from otn_push.status.snapshot import take_snapshot
from shared.db import Job, PushRun, make_engine
from shared.redact import redact_url
from shared.settings import Settings
from shared.topology import dlq_name, dlx_name, queue_name
from tests.integration.conftest import AMQP_URL, Rabbit
from tests.integration.test_scheduler_cli import cli, environment

pytestmark = pytest.mark.integration

PUSH = dt.date(2025, 6, 12)


def render_text(snap: Any) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(snap))
    return console.export_text()


async def seed_push(settings: Settings) -> None:
    """A push in progress: one extract completed, one failed, one extracting."""
    t0 = dt.datetime(2025, 6, 12, 8, 0, tzinfo=dt.UTC)
    engine = make_engine(settings.own_database_url)
    try:
        async with engine.begin() as conn:
            run_id = (
                await conn.execute(
                    insert(PushRun)
                    .values(push_date=PUSH, state="running", started_at=t0)
                    .returning(PushRun.id)
                )
            ).scalar_one()
            common = {"run_id": run_id, "push_date": PUSH, "year": 2024, "created_at": t0}
            for values in [
                {
                    **common,
                    "code": "NSBS",
                    "type": "t",
                    "node": "OTN",
                    "state": "completed",
                    "rows": 1200,
                    "files": [{"name": "a.zip", "size": 1000}, {"name": "a.parquet", "size": 500}],
                    "completed_at": t0 + dt.timedelta(minutes=3),
                },
                {
                    **common,
                    "code": "HFX",
                    "type": "q",
                    "node": "OTN",
                    "state": "failed",
                    "reason": "node OTN database unreachable",
                },
                {**common, "code": "SERC1", "type": "u", "node": "ACT", "state": "extracting"},
            ]:
                await conn.execute(insert(Job).values(**values))
    finally:
        await engine.dispose()


async def put_messages(settings: Settings) -> None:
    """One request nobody consumes, and one dead letter."""
    conn = await aio_pika.connect(AMQP_URL)
    try:
        channel = await conn.channel()
        main = await channel.get_exchange(settings.exchange)
        await main.publish(aio_pika.Message(b"{}"), routing_key="extract.requested")
        dlx = await channel.get_exchange(dlx_name(settings))
        await dlx.publish(aio_pika.Message(b"{}"), routing_key=queue_name(settings, "uploader.files"))
    finally:
        await conn.close()


async def test_status_shows_queues_push_nodes_and_flags(
    make_nodes: Any, make_settings: Any, rabbit: Rabbit
) -> None:
    nodes = await make_nodes("OTN", "ACT")
    settings: Settings = make_settings(nodes=nodes)
    await rabbit.connected(settings)
    await seed_push(settings)
    await put_messages(settings)
    # a busy test machine must not make a node look slow
    env = {**environment(settings), "OTN_PUSH_STATUS_MAX_NODE_LATENCY": "60"}

    code, out, err = await cli(env, "status", "--json")
    assert code == 1, err
    doc = json.loads(out)
    queues = {q["name"]: q for q in doc["queues"]}
    jobs = queues[queue_name(settings, "extractor.jobs")]
    assert (jobs["ready"], jobs["consumers"], jobs["source"]) == (1, 0, "amqp")
    assert queues[dlq_name(settings, "uploader.files")]["ready"] == 1
    push = doc["push"]
    assert push["push_date"] == "2025-06-12" and push["state"] == "running"
    assert push["by_state"]["completed"] == {"jobs": 1, "rows": 1200, "bytes": 1500}
    assert push["by_state"]["extracting"]["jobs"] == 1 and push["by_state"]["listed"]["jobs"] == 0
    assert push["since_cutoff"] > 0
    assert [(f["extract"], f["reason"]) for f in push["failed"]] == [
        ("HFX,2024,q", "node OTN database unreachable")
    ]
    assert push["slowest"][0]["extract"] == "SERC1,2024,u"  # still extracting: its time keeps growing
    assert {n["node"]: n["reachable"] for n in doc["nodes"]} == {"OTN": True, "ACT": True}
    assert all(n["version"] and n["latency"] is not None for n in doc["nodes"])
    assert doc["outbox"] == {"pending": 0, "oldest_age": None}
    assert sorted(doc["flags"]) == sorted(
        [
            f"queue {queue_name(settings, 'extractor.jobs')} has 1 message(s) and no consumer",
            f"dead-letter queue {dlq_name(settings, 'uploader.files')} holds 1 message(s) "
            "(see `otn-push dlq`)",
            "push 2025-06-12: 1 failed extract(s)",
        ]
    )

    # the screen names the same things
    code, out, _ = await cli(env, "status", "--push-date", "2025-06-12")
    assert code == 1
    for text in ("push 2025-06-12", "HFX,2024,q: node OTN database unreachable", "FLAG", "node databases"):
        assert text in out, out

    # a management API that does not answer: flagged, and the queues are still read over AMQP
    mute = settings.model_copy(update={"management_url": "http://ops:s3cret@127.0.0.1:1"})
    snap = await take_snapshot(mute)
    [flag] = [f for f in snap.flags if "management API" in f]
    assert flag.endswith("queues read over AMQP instead") and "s3cret" not in flag
    jobs_stat = next(q for q in snap.queues if q.name == queue_name(settings, "extractor.jobs"))
    assert (jobs_stat.exists, jobs_stat.ready, jobs_stat.source) == (True, 1, "amqp")
    assert any("the management API did not answer" in n for n in snap.notes)

    # nothing flagged once the thresholds allow what is there and the queues are drained (in-process:
    # the same snapshot the command prints)
    await rabbit.close()
    rabbit.settings = []
    await rabbit.connected(settings)
    calm = settings.model_copy(update={"status_max_failed_jobs": 1, "status_max_node_latency": 60.0})
    assert (await take_snapshot(calm)).flags == []
    assert "nothing flagged" in render_text(await take_snapshot(calm))
    # a date asked for that has no push run (a typo in a cron line) must not look healthy
    assert (await take_snapshot(calm, dt.date(2025, 6, 13))).flags == [
        "no push run for 2025-06-13 (--push-date)"
    ]

    # a node database that is down is flagged, and `nodes check` says so alone too
    down_url = "postgresql://postgres@127.0.0.1:1/nope"
    snap = await take_snapshot(calm.model_copy(update={"nodes": {**settings.nodes, "FACT": down_url}}))
    assert snap.flags == [
        f"node FACT database unreachable ({down_url}): connection refused (ConnectionRefusedError)"
    ]
    code, out, _ = await cli(
        {**env, "OTN_PUSH_NODES": env["OTN_PUSH_NODES"] + f";FACT={down_url}"}, "nodes", "check"
    )
    assert code == 1
    assert "FACT" in out and "NO" in out and "OTN" in out


async def test_watch_into_a_pipe_writes_one_whole_snapshot_per_read(
    make_nodes: Any, make_settings: Any, rabbit: Rabbit
) -> None:
    import asyncio
    import os
    import signal
    import sys
    from pathlib import Path

    nodes = await make_nodes("OTN")
    settings: Settings = make_settings(nodes=nodes)
    await rabbit.connected(settings)
    await seed_push(settings)
    cli_path = str(Path(sys.executable).parent / "otn-push")
    env = {**os.environ, **environment(settings)}
    for args, marker in (
        (["status", "--watch", "--interval", "0.2"], b"otn-push status at "),
        (["status", "--watch", "--json", "--interval", "0.2"], b'"push_date": "2025-06-12"'),
    ):
        proc = await asyncio.create_subprocess_exec(
            cli_path, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        seen = b""
        try:
            async with asyncio.timeout(120):
                while seen.count(marker) < 2:
                    chunk = await proc.stdout.read(65536)
                    assert chunk, f"{args}: the output ended early: {seen.decode()[-500:]}"
                    seen += chunk
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
        if "--json" in args:
            first = seen.split(b"\n", 1)[0]
            assert json.loads(first)["push"]["state"] == "running"  # one document per line
        else:
            assert b"SERC1,2024,u" in seen  # whole snapshots, not a live display's control codes


async def test_a_vhost_that_does_not_exist_is_named_as_such(make_nodes: Any, make_settings: Any) -> None:
    nodes = await make_nodes("OTN")
    settings: Settings = make_settings(nodes=nodes)
    missing = settings.model_copy(update={"amqp_url": AMQP_URL.rstrip("/") + "/no-such-vhost"})
    rabbit_flags = [f for f in (await take_snapshot(missing)).flags if "RabbitMQ" in f]
    assert rabbit_flags == [
        f"RabbitMQ at {redact_url(missing.amqp_url)} refused the connection: does the vhost 'no-such-vhost' "
        "exist, and may this user use it (and is the password right)? (OTN_PUSH_AMQP_URL)"
    ]
