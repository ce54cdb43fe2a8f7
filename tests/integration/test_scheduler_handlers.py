"""Scheduler handlers on the real own database with a fake list port (no broker, no node databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import select

from services.scheduler import handlers
from shared.db import (
    COMPLETED,
    EXTRACTING,
    FAILED,
    Job,
    OutboxMessage,
    PushRun,
    make_engine,
    make_sessionmaker,
)
from shared.extract_list import ListActivity, ListRow
from shared.messages import (
    ExtractFailed,
    ExtractKey,
    ExtractUploaded,
    ProjectNotified,
    ProjectNotifyFailed,
    PushStart,
)

pytestmark = pytest.mark.integration

PUSH = dt.date(2024, 6, 13)


class FakeLists:
    def __init__(self, rows: list[ListRow], projects: dict[str, str], down: tuple[str, ...] = ()) -> None:
        self.rows = rows
        self.known = projects
        self.down = down
        self.completed: list[int] = []

    async def pending_rows(self, push_date: dt.date) -> list[ListRow]:
        return [r for r in self.rows if r.id not in self.completed]

    async def projects(self, unreachable: list[str] | None = None) -> dict[str, str]:
        assert unreachable is not None, "the scheduler must tolerate unreachable nodes"
        unreachable.extend(self.down)
        return dict(self.known)

    async def mark_completed(self, row_ids: Sequence[int]) -> int:
        new = [i for i in row_ids if i not in self.completed]
        self.completed += new
        return len(new)

    async def activity(self, push_date: dt.date) -> ListActivity:
        return ListActivity(pending=len(await self.pending_rows(push_date)), last_added=None)


@pytest.fixture
async def sessions(own_db: str) -> AsyncIterator[object]:
    engine = make_engine(own_db)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def outbox_ids(sessions) -> list[str]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return list((await s.execute(select(OutboxMessage.message_id).order_by(OutboxMessage.id))).scalars())


async def jobs(sessions) -> dict[str, Job]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return {f"{j.code},{j.year},{j.type}": j for j in (await s.execute(select(Job))).scalars()}


async def test_start_complete_and_restart_with_a_late_list_row(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists(
        [ListRow(1, "NSBS,2024,t"), ListRow(2, "HFX,2023,q"), ListRow(3, "NSBS,2024,t")],
        {"NSBS": "OTN", "HFX": "OTN"},
    )
    kicks: list[int] = []
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists, kick=lambda: kicks.append(1))  # type: ignore[arg-type]

    out = await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert sorted(out.requested) == ["HFX,2023,q", "NSBS,2024,t"] and kicks
    ids = await outbox_ids(sessions)
    assert ids[0] == "push.ready:2024-06-13:2"
    assert sorted(ids[1:]) == [
        "extract.requested:2024-06-13:HFX:2023:q:1",
        "extract.requested:2024-06-13:NSBS:2024:t:1",
    ]
    # the same command again (redelivered): nothing new staged
    await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert len(await outbox_ids(sessions)) == 3

    by_label = await jobs(sessions)
    nsbs, hfx = by_label["NSBS,2024,t"], by_label["HFX,2023,q"]
    notified = ProjectNotified(push_date=PUSH, project="NSBS", job_ids=[nsbs.id], recipients=["a@b.org"])
    assert await handlers.on_project_notified(notified, ports) == [nsbs.id]
    assert sorted(lists.completed) == [1, 3]
    assert await handlers.on_project_notified(notified, ports) == []  # twice: no change

    # a row for the already completed extract appears; HFX fails; the push is restarted
    lists.rows.append(ListRow(4, "NSBS,2024,t"))
    key = ExtractKey(code="HFX", year=2023, type="q")
    failed = ExtractFailed(push_date=PUSH, job_id=hfx.id, extract=key, stage="extract", reason="node down")
    assert await handlers.on_extract_failed(failed, ports) == [hfx.id]
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.state == "failed" and run.finished_at is not None
    assert "push.completed:2024-06-13:2" in await outbox_ids(sessions)

    again = await handlers.start_push(PushStart(push_date=PUSH), ports)
    # the row added after NSBS was made may come with new data: NSBS is built again, not completed with
    # the files made before the row existed
    assert again.retried == ["HFX,2023,q"] and again.rebuilt == ["NSBS,2024,t"] and not again.requested
    assert 4 not in lists.completed
    by_label = await jobs(sessions)
    nsbs = by_label["NSBS,2024,t"]
    assert nsbs.state == EXTRACTING and nsbs.attempts == 2 and sorted(nsbs.list_row_ids) == [1, 3, 4]
    assert nsbs.files == [] and nsbs.completed_at is None
    assert by_label["HFX,2023,q"].state == EXTRACTING and by_label["HFX,2023,q"].attempts == 2
    ids = await outbox_ids(sessions)
    assert "extract.requested:2024-06-13:HFX:2023:q:2" in ids
    assert "extract.requested:2024-06-13:NSBS:2024:t:2" in ids
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.state == "running" and run.restarted_at is not None and run.finished_at is None
    # its new email-less completion completes the late row too
    late = ProjectNotified(push_date=PUSH, project="NSBS", job_ids=[nsbs.id], recipients=[])
    assert await handlers.on_project_notified(late, ports) == [nsbs.id]
    assert 4 in lists.completed


async def test_a_row_added_while_its_extract_is_built_stays_pending(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH), ports)
    lists.rows.append(ListRow(2, "NSBS,2024,t"))
    out = await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert out.in_flight == ["NSBS,2024,t"]
    nsbs = (await jobs(sessions))["NSBS,2024,t"]
    assert nsbs.list_row_ids == [1]
    done = ProjectNotified(push_date=PUSH, project="NSBS", job_ids=[nsbs.id], recipients=["a@b.org"])
    await handlers.on_project_notified(done, ports)
    assert lists.completed == [1]  # row 2 is not completed with files that may predate it
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert any("list row(s) 2" in w and "start the push again" in w for w in run.warnings)
    again = await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert again.rebuilt == ["NSBS,2024,t"]


async def requested_formats(sessions) -> dict[str, str]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        rows = (
            await s.execute(
                select(OutboxMessage.message_id, OutboxMessage.payload).where(
                    OutboxMessage.routing_key == "extract.requested"
                )
            )
        ).all()
    return {mid: payload["format"] for mid, payload in rows}


async def test_another_format_on_a_finished_push_rebuilds_every_extract(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t"), ListRow(2, "HFX,2023,q")], {"NSBS": "OTN", "HFX": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH, format="2025"), ports)
    by_label = await jobs(sessions)
    done = ProjectNotified(
        push_date=PUSH, project="X", job_ids=[j.id for j in by_label.values()], recipients=["a@b.org"]
    )
    await handlers.on_project_notified(done, ports)
    assert sorted(lists.completed) == [1, 2]

    # every list row is completed, so the list selects nothing: the re-push still rebuilds every job
    out = await handlers.start_push(PushStart(push_date=PUSH, format="legacy"), ports)
    assert sorted(out.rebuilt) == ["HFX,2023,q", "NSBS,2024,t"] and out.ignored is None
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.format == "legacy" and run.state == "running"
    assert all(j.state == EXTRACTING and j.attempts == 2 for j in (await jobs(sessions)).values())
    formats = await requested_formats(sessions)
    assert formats["extract.requested:2024-06-13:NSBS:2024:t:2"] == "legacy"
    assert formats["extract.requested:2024-06-13:HFX:2023:q:2"] == "legacy"


async def test_a_job_that_failed_in_a_re_push_is_retried_by_the_next_start(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t"), ListRow(2, "HFX,2023,q")], {"NSBS": "OTN", "HFX": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH, format="2025"), ports)
    ids = [j.id for j in (await jobs(sessions)).values()]
    await handlers.on_project_notified(
        ProjectNotified(push_date=PUSH, project="X", job_ids=ids, recipients=["a@b.org"]), ports
    )
    await handlers.start_push(PushStart(push_date=PUSH, format="legacy"), ports)
    hfx = (await jobs(sessions))["HFX,2023,q"]
    failed = ExtractFailed(
        push_date=PUSH, job_id=hfx.id, extract=ExtractKey(code="HFX", year=2023, type="q"), stage="extract",
        reason="node OTN database unreachable",
    )  # fmt: skip
    await handlers.on_extract_failed(failed, ports)
    assert sorted(lists.completed) == [1, 2]  # from the first run: the list selects nothing now

    # the node is back: starting the push again (in its format) retries the failed job, and only it
    out = await handlers.start_push(PushStart(push_date=PUSH, format="legacy"), ports)
    assert (out.retried, out.rebuilt, out.requested) == (["HFX,2023,q"], [], [])
    now = await jobs(sessions)
    assert (now["HFX,2023,q"].state, now["HFX,2023,q"].attempts) == (EXTRACTING, 3)
    assert now["NSBS,2024,t"].attempts == 2 and now["NSBS,2024,t"].state != FAILED
    assert (await requested_formats(sessions))["extract.requested:2024-06-13:HFX:2023:q:3"] == "legacy"


async def test_another_format_while_the_push_runs_is_ignored_and_said(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH, format="2025"), ports)
    before = await outbox_ids(sessions)
    out = await handlers.start_push(PushStart(push_date=PUSH, format="legacy"), ports)
    assert out.ignored is not None and "still running in format 2025" in out.ignored
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.format == "2025"  # the format the files are being built in
    assert any("ignored" in w and "--format legacy" in w for w in run.warnings)
    assert await outbox_ids(sessions) == before
    assert set((await requested_formats(sessions)).values()) == {"2025"}


async def test_only_invalid_rows_finish_the_run_as_failed(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024"), ListRow(2, "NOPE,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    out = await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert out.finished and len(out.rejected) == 2
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.state == "failed"
    assert any("list row 1" in w and "expected 3" in w for w in run.warnings)
    assert await jobs(sessions) == {}
    assert lists.completed == []


async def test_failed_jobs_do_not_complete_their_rows(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH), ports)
    job = (await jobs(sessions))["NSBS,2024,t"]
    key = ExtractKey(code="NSBS", year=2024, type="t")
    failed = ExtractFailed(
        push_date=PUSH, job_id=job.id, extract=key, stage="upload", reason="store unwritable"
    )
    await handlers.on_extract_failed(failed, ports)
    late = ProjectNotified(push_date=PUSH, project="NSBS", job_ids=[job.id], recipients=[])
    assert await handlers.on_project_notified(late, ports) == []
    assert lists.completed == []
    assert (await jobs(sessions))["NSBS,2024,t"].state == FAILED


async def test_a_node_down_at_start_does_not_refuse_its_projects(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t"), ListRow(2, "SERC1,2017,q")], {"NSBS": "OTN"}, down=("ACT",))
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    out = await handlers.start_push(PushStart(push_date=PUSH), ports)
    assert sorted(out.requested) == ["NSBS,2024,t", "SERC1,2017,q"] and out.rejected == []
    serc = (await jobs(sessions))["SERC1,2017,q"]
    assert serc.node is None and any("ACT unreachable" in w for w in serc.warnings)
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert any("ACT" in w and "unreachable" in w for w in run.warnings)


async def test_a_job_failed_at_notify_completes_when_its_email_goes_out_after_all(sessions) -> None:  # type: ignore[no-untyped-def]
    lists = FakeLists([ListRow(1, "NSBS,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH), ports)
    job = (await jobs(sessions))["NSBS,2024,t"]
    key = ExtractKey(code="NSBS", year=2024, type="t")
    uploaded = ExtractUploaded(push_date=PUSH, job_id=job.id, extract=key, node="OTN", files=[], rows=3)
    assert await handlers.on_extract_uploaded(uploaded, ports)
    gave_up = ProjectNotifyFailed(push_date=PUSH, project="NSBS", job_ids=[job.id], reason="SMTP down")
    await handlers.on_project_notify_failed(gave_up, ports)
    async with sessions() as s:
        assert (await s.execute(select(PushRun))).scalar_one().state == "failed"
    assert lists.completed == []

    # the dead letter replayed after the fix: the email went out, so the extract and the push complete
    late = ProjectNotified(push_date=PUSH, project="NSBS", job_ids=[job.id], recipients=["a@b.org"])
    assert await handlers.on_project_notified(late, ports) == [job.id]
    done = (await jobs(sessions))["NSBS,2024,t"]
    assert done.state == COMPLETED and done.reason is None
    assert any("completed after it had failed" in w for w in done.warnings)
    assert lists.completed == [1]
    async with sessions() as s:
        assert (await s.execute(select(PushRun))).scalar_one().state == "completed"


@pytest.mark.parametrize("failure_first", [True, False])
async def test_a_push_whose_email_waits_for_a_failed_extract_ends_as_failed(  # type: ignore[no-untyped-def]
    sessions, failure_first: bool
) -> None:
    # NSBS's email waits for both its extracts; one fails: the other stays notifying, and the push ends
    # (it ran for ever, and `push start --wait` with it) whichever of the two events comes last
    lists = FakeLists([ListRow(1, "NSBS,2022,t"), ListRow(2, "NSBS,2024,t")], {"NSBS": "OTN"})
    ports = handlers.SchedulerPorts(sessions=sessions, lists=lists)  # type: ignore[arg-type]
    await handlers.start_push(PushStart(push_date=PUSH), ports)
    by_label = await jobs(sessions)
    old, new = by_label["NSBS,2022,t"], by_label["NSBS,2024,t"]
    failed = ExtractFailed(
        push_date=PUSH, job_id=old.id, extract=ExtractKey(code="NSBS", year=2022, type="t"), stage="upload",
        reason="Is a directory",
    )  # fmt: skip
    uploaded = ExtractUploaded(
        push_date=PUSH, job_id=new.id, extract=ExtractKey(code="NSBS", year=2024, type="t"), node="OTN",
        files=[], rows=3,
    )  # fmt: skip
    if failure_first:
        await handlers.on_extract_failed(failed, ports)
        assert await run_state(sessions) == "running"  # the 2024 extract is still being made
        await handlers.on_extract_uploaded(uploaded, ports)
    else:
        await handlers.on_extract_uploaded(uploaded, ports)
        assert await run_state(sessions) == "running"
        await handlers.on_extract_failed(failed, ports)
    async with sessions() as s:
        run = (await s.execute(select(PushRun))).scalar_one()
    assert run.state == "failed" and run.finished_at is not None
    assert (
        "the email of NSBS waits for its failed extract(s): start the push again once fixed" in run.warnings
    )
    assert {label: j.state for label, j in (await jobs(sessions)).items()} == {
        "NSBS,2022,t": FAILED,
        "NSBS,2024,t": "notifying",
    }
    assert any(i.startswith("push.completed:2024-06-13") for i in await outbox_ids(sessions))


async def run_state(sessions) -> str:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return str((await s.execute(select(PushRun.state))).scalar_one())
