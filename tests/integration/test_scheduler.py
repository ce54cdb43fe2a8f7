"""Scheduler against the real PostgreSQL and RabbitMQ: select, record, request, complete, restart."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from services.scheduler.app import build_app
from shared.broker import publish
from shared.db import (
    COMPLETED,
    EXTRACTING,
    FAILED,
    NOTIFYING,
    UPLOADING,
    Job,
    PushRun,
    make_engine,
    make_sessionmaker,
)
from shared.extract_list import add_rows
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    PROJECT_NOTIFIED,
    PROJECT_NOTIFY_FAILED,
    PUSH_START,
    ExtractCreated,
    ExtractFailed,
    ExtractKey,
    ExtractUploaded,
    FileInfo,
    ProjectNotified,
    ProjectNotifyFailed,
    PushStart,
)
from shared.nodeschema import L, P
from shared.settings import Settings
from shared.topology import dlq_name, queue_name
from tests.integration.conftest import Rabbit, eventually, get_one, message_count

pytestmark = pytest.mark.integration

PUSH = dt.date(2022, 10, 20)


async def seed(nodes: dict[str, str]) -> list[int]:
    """Projects on two nodes and a list for PUSH with a duplicate, a lower-case and two bad rows."""
    otn = await asyncpg.connect(nodes["OTN"])
    act = await asyncpg.connect(nodes["ACT"])
    try:
        await otn.execute(
            f"INSERT INTO {P.table} ({P.code}, {P.node}) VALUES ('NSBS', 'OTN'), ('HFX', 'OTN')"
        )
        await act.execute(f"INSERT INTO {P.table} ({P.code}, {P.node}) VALUES ('SERC1', 'ACT')")
        return await add_rows(
            otn,
            PUSH,
            ["NSBS,2022,t", "SERC1,2017,q", "nsbs,2022,t", "NOPE,2022,t", "NSBS;2022;q"],
            "https://example.org/issues/1",
        )
    finally:
        await otn.close()
        await act.close()


async def list_state(url: str) -> dict[int, tuple[bool, bool]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"SELECT {L.id}, {L.completed}, {L.completed_at} FROM {L.table}")
        return {r[0]: (r[1], r[2] is not None) for r in rows}
    finally:
        await conn.close()


class Own:
    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.own_database_url)
        self.sessions = make_sessionmaker(self.engine)

    async def jobs(self) -> dict[str, Job]:
        async with self.sessions() as s:
            return {f"{j.code},{j.year},{j.type}": j for j in (await s.execute(select(Job))).scalars()}

    async def run(self) -> PushRun | None:
        async with self.sessions() as s:
            return (await s.execute(select(PushRun).where(PushRun.push_date == PUSH))).scalar_one_or_none()


async def drain(queue: str) -> list[dict[str, Any]]:
    bodies = []
    while await message_count(queue):
        bodies.append(json.loads((await get_one(queue)).body))
    return bodies


@pytest.fixture
async def world(make_nodes, make_settings, rabbit: Rabbit):  # type: ignore[no-untyped-def]
    nodes = await make_nodes("OTN", "ACT")
    row_ids = await seed(nodes)
    settings: Settings = make_settings(nodes=nodes, home_node="OTN", push_dates=[PUSH])
    broker = rabbit.broker(settings)
    app = build_app(settings, broker=broker, ticker=False)
    await app.start()
    client = await rabbit.connected(settings)
    own = Own(settings)
    yield settings, nodes, row_ids, app, client, own
    await app.stop()
    await own.engine.dispose()


async def test_push_start_records_run_and_jobs_and_requests_work(world) -> None:  # type: ignore[no-untyped-def]
    settings, _nodes, row_ids, _app, client, own = world
    await publish(client, settings, PUSH_START, PushStart(push_date=PUSH), "push.start:test")
    jobs_q = queue_name(settings, "extractor.jobs")
    await eventually(lambda: _has(jobs_q, 2), "two extract requests")
    requests = sorted(await drain(jobs_q), key=lambda r: r["extract"]["code"])
    assert [(r["extract"]["code"], r["extract"]["year"], r["extract"]["type"]) for r in requests] == [
        ("NSBS", 2022, "t"),
        ("SERC1", 2017, "q"),
    ]
    jobs = await own.jobs()
    assert set(jobs) == {"NSBS,2022,t", "SERC1,2017,q"}
    nsbs = jobs["NSBS,2022,t"]
    assert nsbs.state == EXTRACTING and nsbs.node == "OTN" and nsbs.attempts == 1
    assert sorted(nsbs.list_row_ids) == [row_ids[0], row_ids[2]]  # listed twice: one job, both rows
    assert jobs["SERC1,2017,q"].node == "ACT"
    assert {r["job_id"] for r in requests} == {j.id for j in jobs.values()}
    run = await own.run()
    assert run is not None and run.state == "running"
    rejected = [w for w in run.warnings if w.startswith("rejected: ")]
    assert len(rejected) == 2
    assert any("unknown project NOPE" in w for w in rejected)
    assert any("separated by ';'" in w for w in rejected)
    ready = await drain(queue_name(settings, "push.events"))
    assert [len(r["jobs"]) for r in ready] == [2]


async def _has(queue: str, n: int) -> bool:
    return await message_count(queue) >= n


def created(job: Job, rows: int = 10) -> ExtractCreated:
    key = ExtractKey(code=job.code, year=job.year, type=job.type)  # type: ignore[arg-type]
    file = FileInfo(
        name=f"{job.code.lower()}.zip", path=f"/staging/{job.code.lower()}.zip", size=5, sha256="ab"
    )
    return ExtractCreated(
        push_date=PUSH,
        job_id=job.id,
        extract=key,
        node=job.node or "OTN",
        files=[file],
        rows=rows,
        summary={job.code: rows},
        warnings=["a warning"],
    )


async def test_events_move_jobs_forward_complete_rows_and_finish(world) -> None:  # type: ignore[no-untyped-def]
    settings, nodes, row_ids, _app, client, own = world
    await publish(client, settings, PUSH_START, PushStart(push_date=PUSH), "push.start:test")
    await eventually(lambda: _jobs_in(own, EXTRACTING, 2), "two jobs extracting")
    jobs = await own.jobs()
    nsbs, serc = jobs["NSBS,2022,t"], jobs["SERC1,2017,q"]

    await publish(client, settings, EXTRACT_CREATED, created(nsbs), "c1")
    await publish(client, settings, EXTRACT_CREATED, created(nsbs, rows=99), "c1-again")  # twice: no change
    await eventually(lambda: _state_is(own, "NSBS,2022,t", UPLOADING), "NSBS uploading")
    uploaded = ExtractUploaded(
        push_date=PUSH,
        job_id=nsbs.id,
        extract=created(nsbs).extract,
        node="OTN",
        files=created(nsbs).files,
        rows=10,
    )
    await publish(client, settings, EXTRACT_UPLOADED, uploaded, "u1")
    await eventually(lambda: _state_is(own, "NSBS,2022,t", NOTIFYING), "NSBS notifying")
    # a late duplicate of an earlier step never moves the job back
    await publish(client, settings, EXTRACT_CREATED, created(nsbs), "c1-late")
    notified = ProjectNotified(
        push_date=PUSH, project="NSBS", job_ids=[nsbs.id], recipients=["pi@example.org"]
    )
    await publish(client, settings, PROJECT_NOTIFIED, notified, "n1")
    await eventually(lambda: _state_is(own, "NSBS,2022,t", COMPLETED), "NSBS completed")
    job = (await own.jobs())["NSBS,2022,t"]
    assert job.rows == 10 and job.summary == {"NSBS": 10}
    assert job.warnings.count("a warning") == 1  # delivered twice, recorded once
    assert any("upper-cased" in w for w in job.warnings)
    assert job.completed_at is not None

    rows = await list_state(nodes["OTN"])
    assert rows[row_ids[0]] == (True, True) and rows[row_ids[2]] == (True, True)
    assert rows[row_ids[1]] == (False, False)  # SERC1 not done yet
    assert (await own.run()).state == "running"  # type: ignore[union-attr]

    failed = ExtractFailed(
        push_date=PUSH, job_id=serc.id, extract=created(serc).extract, stage="extract", reason="x"
    )
    await publish(client, settings, EXTRACT_FAILED, failed, "f1")
    await eventually(lambda: _state_is(own, "SERC1,2017,q", FAILED), "SERC1 failed")
    await eventually(lambda: _run_state(own, "failed"), "run finished")
    assert (await own.jobs())["SERC1,2017,q"].reason == "extract: x"
    done = [m for m in await drain(queue_name(settings, "push.events")) if "completed" in m]
    assert done == [{"push_date": "2022-10-20", "run_id": done[0]["run_id"], "completed": 1, "failed": 3}]


async def _jobs_in(own: Own, state: str, n: int) -> bool:
    return sum(1 for j in (await own.jobs()).values() if j.state == state) == n


async def _state_is(own: Own, label: str, state: str) -> bool:
    job = (await own.jobs()).get(label)
    return job is not None and job.state == state


async def _run_state(own: Own, state: str) -> bool:
    run = await own.run()
    return run is not None and run.state == state


async def test_restart_does_only_what_is_not_done(world) -> None:  # type: ignore[no-untyped-def]
    settings, _nodes, _row_ids, app, _client, own = world
    ports = app.scheduler.ports
    from services.scheduler.handlers import on_extract_failed, start_push

    first = await start_push(PushStart(push_date=PUSH), ports)
    assert sorted(first.requested) == ["NSBS,2022,t", "SERC1,2017,q"]
    jobs = await own.jobs()
    nsbs, serc = jobs["NSBS,2022,t"], jobs["SERC1,2017,q"]
    failed = ExtractFailed(
        push_date=PUSH, job_id=serc.id, extract=created(serc).extract, stage="extract", reason="down"
    )
    assert await on_extract_failed(failed, ports) == [serc.id]
    assert await on_extract_failed(failed, ports) == []  # twice: nothing more

    again = await start_push(PushStart(push_date=PUSH), ports)
    assert again.requested == [] and again.retried == ["SERC1,2017,q"] and again.in_flight == ["NSBS,2022,t"]
    jobs = await own.jobs()
    assert jobs["SERC1,2017,q"].state == EXTRACTING and jobs["SERC1,2017,q"].attempts == 2
    assert jobs["SERC1,2017,q"].reason is None
    assert jobs["NSBS,2022,t"].attempts == 1 and jobs["NSBS,2022,t"].id == nsbs.id

    await eventually(lambda: _has(queue_name(settings, "extractor.jobs"), 3), "three requests in all")
    requests = await drain(queue_name(settings, "extractor.jobs"))
    assert sorted(r["extract"]["code"] for r in requests) == ["NSBS", "SERC1", "SERC1"]

    # every list row done (completion written back): starting again is not "a list with no rows"
    conn = await asyncpg.connect(_nodes["OTN"])
    try:
        await conn.execute(f"UPDATE {L.table} SET {L.completed} = true, {L.completed_at} = now()")
    finally:
        await conn.close()
    await start_push(PushStart(push_date=PUSH), ports)
    run = await own.run()
    assert run is not None and not [w for w in run.warnings if "no rows to do" in w], run.warnings


async def test_manual_list_and_automatic_start(world) -> None:  # type: ignore[no-untyped-def]
    settings, nodes, _row_ids, app, _client, own = world
    service = app.scheduler
    # auto_push is off in these settings: the tick does nothing
    assert await service.tick() is None
    assert await own.run() is None
    conn = await asyncpg.connect(nodes["OTN"])
    try:
        await conn.execute(f"UPDATE {L.table} SET {L.date_added} = '2022-10-20T09:00:00Z'")
    finally:
        await conn.close()
    service.settings = settings.model_copy(update={"auto_push": True, "quiet_period": 3600.0})
    service.clock = lambda: dt.datetime(2022, 10, 19, 12, tzinfo=dt.UTC)  # the day before the push
    assert await service.tick() is None
    service.clock = lambda: dt.datetime(2022, 10, 20, 9, 30, tzinfo=dt.UTC)  # last row 30 min ago
    assert await service.tick() is None
    assert await own.run() is None
    service.clock = lambda: dt.datetime(2022, 10, 20, 10, 1, tzinfo=dt.UTC)  # quiet for an hour
    assert await service.tick() == PUSH
    run = await own.run()
    assert run is not None and run.requested_by == "scheduler"
    assert await service.tick() is None  # a run exists now
    assert len(await own.jobs()) == 2


async def test_manual_list_takes_only_the_given_extracts(world) -> None:  # type: ignore[no-untyped-def]
    settings, _nodes, _row_ids, app, _client, own = world
    from services.scheduler.handlers import start_push

    cmd = PushStart(push_date=PUSH, extracts=[ExtractKey(code="HFX", year=2021, type="t")], format="legacy")
    outcome = await start_push(cmd, app.scheduler.ports)
    assert outcome.requested == ["HFX,2021,t"]
    jobs = await own.jobs()
    assert list(jobs) == ["HFX,2021,t"] and jobs["HFX,2021,t"].list_row_ids == []
    await eventually(lambda: _has(queue_name(settings, "extractor.jobs"), 1), "one request")
    (request,) = await drain(queue_name(settings, "extractor.jobs"))
    assert request["format"] == "legacy"


async def test_notify_failure_fails_the_project_jobs(world) -> None:  # type: ignore[no-untyped-def]
    settings, _nodes, _row_ids, _app, client, own = world
    await publish(client, settings, PUSH_START, PushStart(push_date=PUSH), "push.start:test")
    await eventually(lambda: _jobs_in(own, EXTRACTING, 2), "two jobs extracting")
    jobs = await own.jobs()
    nsbs = jobs["NSBS,2022,t"]
    bad = ProjectNotifyFailed(push_date=PUSH, project="NSBS", job_ids=[nsbs.id], reason="template error")
    await publish(client, settings, PROJECT_NOTIFY_FAILED, bad, "nf1")
    await eventually(lambda: _state_is(own, "NSBS,2022,t", FAILED), "NSBS failed")
    assert (await own.jobs())["NSBS,2022,t"].reason == "notify: NSBS: template error"
    assert (await own.jobs())["SERC1,2017,q"].state == EXTRACTING
    # a malformed event can never succeed: it goes to the dead-letter queue at once
    await publish(client, settings, PROJECT_NOTIFIED, {"push_date": "not a date"}, "broken")
    dead = await get_one(dlq_name(settings, "scheduler.events"))
    assert dead.message_id == "broken"
