"""Scheduler handlers: plain async functions over the own DB (SQLAlchemy) and the list port.

Every state change and the events it causes are committed together (outbox); the relay publishes them.
Message ids are business keys, with the job's attempt number where a step may legitimately repeat
(a failed job requested again after a restart).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from services.scheduler.lists import ListPort
from services.scheduler.state import (
    RANK,
    TERMINAL,
    ExistingJob,
    JobKey,
    auto_start_due,
    may_move,
    plan_failed_again,
    plan_repush,
    plan_start,
)
from shared.calendar import PushCalendar
from shared.db import COMPLETED, EXTRACTING, FAILED, NOTIFYING, UPLOADING, Job, PushRun
from shared.extract_list import ListRow, plan_jobs
from shared.messages import (
    EXTRACT_REQUESTED,
    PUSH_COMPLETED,
    PUSH_READY,
    ExtractCreated,
    ExtractFailed,
    ExtractKey,
    ExtractRequested,
    ExtractUploaded,
    ProjectNotified,
    ProjectNotifyFailed,
    PushCompleted,
    PushReady,
    PushStart,
)
from shared.outbox import add_to_outbox_once

log = logging.getLogger("otn_push.scheduler")
PRODUCER = "scheduler"
REJECTED = "rejected: "


@dataclass
class SchedulerPorts:
    sessions: async_sessionmaker[AsyncSession]
    lists: ListPort
    kick: Callable[[], None] = lambda: None  # wake the outbox relay after a commit


@dataclass
class StartOutcome:
    run_id: int
    requested: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)  # completed before, built again (late rows, re-push)
    finished: bool = False
    ignored: str | None = None  # why the command changed nothing


def requested_id(push_date: dt.date, key: ExtractKey, attempt: int) -> str:
    return f"{EXTRACT_REQUESTED}:{push_date.isoformat()}:{key.code}:{key.year}:{key.type}:{attempt}"


def _key(job: Job) -> ExtractKey:
    return ExtractKey(code=job.code, year=job.year, type=job.type)  # type: ignore[arg-type]


async def start_push(cmd: PushStart, ports: SchedulerPorts) -> StartOutcome:
    """Select the list (or take the manual one), record the run and jobs, stage the work; idempotent."""
    push_date = cmd.push_date
    if cmd.extracts is None:
        rows = await ports.lists.pending_rows(push_date)
    else:
        rows = [ListRow(None, e.label) for e in cmd.extracts]
    unreachable: list[str] = []
    projects = await ports.lists.projects(unreachable)
    planned, rejects = plan_jobs(rows, projects, max_year=push_date.year, unreachable=unreachable)
    warnings = [REJECTED + r.describe() for r in rejects]
    if unreachable:
        warnings.append(f"node(s) {', '.join(unreachable)} unreachable when the push started")
    for note_job in planned:
        warnings += [f"{note_job.key.label}: {n}" for n in note_job.notes]

    async with ports.sessions() as session, session.begin():
        found_run = await _run_for_update(session, push_date)
        existing = await _jobs_by_key(session, push_date)
        busy = [j for j in existing.values() if j.state not in TERMINAL]
        if not rows and not existing:  # a resumed push whose rows are all done has nothing to warn about
            source = "manual list" if cmd.extracts is not None else f"extract list for {push_date}"
            warnings.append(f"the {source} has no rows to do")
        if found_run is not None and found_run.format != cmd.format and busy:
            # its files are being built in the recorded format: switching now would mix formats
            refusal = (
                f"push.start by {cmd.requested_by} in format {cmd.format} ignored: the push is still "
                f"running in format {found_run.format}; start it again with --format {cmd.format} "
                "once it has ended to re-push it"
            )
            found_run.warnings = _merge_text(found_run.warnings, [refusal])
            log.warning("push %s: %s", push_date, refusal)
            return StartOutcome(run_id=found_run.id, ignored=refusal)
        repush = found_run is not None and found_run.format != cmd.format
        if found_run is not None and repush:
            warnings.append(f"re-push in format {cmd.format} (was {found_run.format}): every extract rebuilt")
        run = await _upsert_run(session, found_run, cmd, warnings)
        known = {
            k: ExistingJob(j.id, j.state, tuple(j.list_row_ids), j.node or "") for k, j in existing.items()
        }
        plan = plan_start(known, planned)
        if repush:
            plan = plan_repush(plan, known)
        elif cmd.extracts is None:
            plan = plan_failed_again(plan, known)
        outcome = StartOutcome(run_id=run.id, rejected=warnings[: len(rejects)])
        to_request: list[Job] = []
        for job in plan.new:
            row = Job(
                run_id=run.id,
                push_date=push_date,
                code=job.key.code,
                year=job.key.year,
                type=job.key.type,
                node=job.node or None,
                state=EXTRACTING,
                list_row_ids=list(job.list_row_ids),
                attempts=1,
                files=[],
                summary={},
                warnings=list(job.notes),
            )
            session.add(row)
            to_request.append(row)
            outcome.requested.append(job.key.label)
        for found, job in plan.retry:
            row = existing[(job.key.code, job.key.year, job.key.type)]
            row.state, row.reason, row.run_id = EXTRACTING, None, run.id
            row.attempts += 1
            row.list_row_ids = _merge(row.list_row_ids, job.list_row_ids)
            row.files, row.rows, row.summary, row.warnings = [], None, {}, list(job.notes)
            row.extracted_at = row.uploaded_at = row.notified_at = row.completed_at = None
            to_request.append(row)
            (outcome.rebuilt if found.state == COMPLETED else outcome.retried).append(job.key.label)
        for _found, job in plan.in_flight:
            row = existing[(job.key.code, job.key.year, job.key.type)]
            late = [i for i in job.list_row_ids if i not in (row.list_row_ids or [])]
            if late:
                # the build may have read the data before these rows were added: they stay pending
                # (not completed with files that may not hold their changes) for the next start
                shown = ", ".join(map(str, late))
                note = (
                    f"{job.key.label}: list row(s) {shown} added while it was being built are left "
                    "pending; start the push again once it has ended to rebuild it"
                )
                run.warnings = _merge_text(run.warnings, [note])
            outcome.in_flight.append(job.key.label)
        for _found, job in plan.completed:
            outcome.completed.append(job.key.label)
        await session.flush()
        jobs_now = [*to_request, *(existing[(j.key.code, j.key.year, j.key.type)] for _, j in plan.in_flight)]
        ready = PushReady(push_date=push_date, run_id=run.id, jobs=[_key(j) for j in jobs_now])
        generation = await _generation(session, push_date)
        await add_to_outbox_once(
            session, PRODUCER, PUSH_READY, ready, f"{PUSH_READY}:{push_date}:{generation}"
        )
        for row in to_request:
            request = ExtractRequested(
                push_date=push_date, job_id=row.id, extract=_key(row), format=cmd.format
            )
            await add_to_outbox_once(
                session,
                PRODUCER,
                EXTRACT_REQUESTED,
                request,
                requested_id(push_date, _key(row), row.attempts),
            )
        outcome.finished = await _finish_if_done(session, push_date)
    ports.kick()
    for reject in rejects:
        log.warning("push %s: list entry refused: %s", push_date, reject.describe())
    log.info(
        "push %s started by %s: %d requested, %d retried, %d in flight, %d already completed, %d rejected",
        push_date,
        cmd.requested_by,
        len(outcome.requested),
        len(outcome.retried) + len(outcome.rebuilt),
        len(outcome.in_flight),
        len(outcome.completed),
        len(rejects),
    )
    return outcome


def _merge(current: Sequence[int] | None, more: Sequence[int]) -> list[int]:
    merged = list(current or [])
    merged += [i for i in more if i not in merged]
    return merged


async def _run_for_update(session: AsyncSession, push_date: dt.date) -> PushRun | None:
    return (
        await session.execute(select(PushRun).where(PushRun.push_date == push_date).with_for_update())
    ).scalar_one_or_none()


async def _upsert_run(
    session: AsyncSession, run: PushRun | None, cmd: PushStart, warnings: list[str]
) -> PushRun:
    if run is None:
        run = PushRun(
            push_date=cmd.push_date, format=cmd.format, state="running", requested_by=cmd.requested_by
        )
        run.warnings = warnings
        session.add(run)
        await session.flush()
        return run
    run.format, run.requested_by, run.state = cmd.format, cmd.requested_by, "running"
    run.restarted_at, run.finished_at = func.now(), None
    run.warnings = warnings
    return run


async def _jobs_by_key(session: AsyncSession, push_date: dt.date) -> dict[JobKey, Job]:
    jobs = (
        await session.execute(
            select(Job).where(Job.push_date == push_date).order_by(Job.id).with_for_update()
        )
    ).scalars()
    return {(j.code, j.year, j.type): j for j in jobs}


async def _generation(session: AsyncSession, push_date: dt.date) -> int:
    """Grows with every (re)start that requests work: makes run-level message ids unique per round."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Job.attempts), 0)).where(Job.push_date == push_date)
    )
    return int(total or 0)


def _failed_at_notify(job: Job) -> bool:
    """Uploaded, then failed because its email could not go: an email that went out after all (a dead
    letter replayed after the fix) completes it."""
    return job.state == FAILED and job.uploaded_at is not None


async def _reopen_if_all_completed(session: AsyncSession, push_date: dt.date) -> None:
    """A push that finished as failed becomes completed when its last failed job completed late."""
    run = (
        await session.execute(select(PushRun).where(PushRun.push_date == push_date).with_for_update())
    ).scalar_one_or_none()
    if run is None or run.state != "failed" or any(w.startswith(REJECTED) for w in run.warnings or []):
        return
    failed = await session.scalar(
        select(func.count()).select_from(Job).where(Job.push_date == push_date, Job.state == FAILED)
    )
    if not failed:
        run.state = "completed"
        log.info("push %s: its last failed extract completed; the push is completed", push_date)


async def _finish_if_done(session: AsyncSession, push_date: dt.date) -> bool:
    """When every job is completed or failed, finish the run and stage `push.completed` (once a round)."""
    run = (
        await session.execute(select(PushRun).where(PushRun.push_date == push_date).with_for_update())
    ).scalar_one_or_none()
    if run is None or run.state != "running":
        return False
    by_project = (
        await session.execute(
            select(Job.code, Job.state, func.count())
            .where(Job.push_date == push_date)
            .group_by(Job.code, Job.state)
        )
    ).all()
    counts: Counter[str] = Counter()
    states_of: dict[str, set[str]] = {}
    for code, state, n in by_project:
        counts[state] += n
        states_of.setdefault(code, set()).add(state)
    # uploaded extracts whose project email waits for a failed sibling wait for the next start of the
    # push: they are not in flight, and the push must end (as failed) rather than run for ever
    blocked = {code for code, states in states_of.items() if FAILED in states and NOTIFYING in states}
    for code, states in states_of.items():
        if states - {COMPLETED, FAILED} - ({NOTIFYING} if code in blocked else set()):
            return False
    if blocked:
        waiting = ", ".join(sorted(blocked))
        run.warnings = _merge_text(
            run.warnings,
            [f"the email of {waiting} waits for its failed extract(s): start the push again once fixed"],
        )
    rejected = sum(1 for w in run.warnings or [] if w.startswith(REJECTED))
    failed = counts.get(FAILED, 0) + rejected
    run.state = "failed" if failed else "completed"
    run.finished_at = func.now()
    done = PushCompleted(
        push_date=push_date, run_id=run.id, completed=counts.get(COMPLETED, 0), failed=failed
    )
    generation = await _generation(session, push_date)
    await add_to_outbox_once(
        session, PRODUCER, PUSH_COMPLETED, done, f"{PUSH_COMPLETED}:{push_date}:{generation}"
    )
    log.info("push %s finished: %d completed, %d failed", push_date, done.completed, done.failed)
    return True


async def _job_for_update(session: AsyncSession, job_id: int) -> Job | None:
    return (await session.execute(select(Job).where(Job.id == job_id).with_for_update())).scalar_one_or_none()


async def _jobs_for_update(session: AsyncSession, job_ids: Sequence[int]) -> dict[int, Job]:
    if not job_ids:
        return {}
    query = select(Job).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()
    return {job.id: job for job in (await session.execute(query)).scalars()}


def _unknown(kind: str, job_id: int) -> None:
    log.warning("%s for unknown job %d ignored", kind, job_id)


def _movable_to(target: str) -> list[str]:
    """The states `may_move` lets a job leave for `target`: an UPDATE's WHERE checks the rule."""
    return [state for state in RANK if may_move(state, target)]


async def _move(session: AsyncSession, job_id: int, target: str, **values: Any) -> bool:
    """One statement in its own transaction: the job moves to `target` (with `values`) if `may_move` lets
    it. The UPDATE locks the row and re-checks its state after any concurrent change (READ COMMITTED),
    so the rule holds as with SELECT … FOR UPDATE then UPDATE, in one round trip instead of four (no
    BEGIN, SELECT, COMMIT). False: not moved (unknown job, or late/twice: the caller's full path decides).
    """
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    moved = await connection.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(_movable_to(target)))
        .values(state=target, **values)
        .returning(Job.id)
    )
    return moved.first() is not None


async def on_extract_created(msg: ExtractCreated, ports: SchedulerPorts) -> bool:
    """Record the files, rows and summary; the job moves to uploading. True if the state changed."""
    if not msg.warnings:
        # the usual case: one statement (the full path below merges warnings, and records the files of a
        # job that did not move but has none)
        async with ports.sessions() as session:
            if await _move(
                session,
                msg.job_id,
                UPLOADING,
                files=[f.model_dump(mode="json") for f in msg.files],
                rows=msg.rows,
                summary=dict(msg.summary),
                node=msg.node,
                warnings=func.coalesce(Job.warnings, func.jsonb_build_array()),
                extracted_at=func.coalesce(Job.extracted_at, func.now()),
            ):
                return True
    async with ports.sessions() as session, session.begin():
        job = await _job_for_update(session, msg.job_id)
        if job is None:
            _unknown("extract.created", msg.job_id)
            return False
        moved = may_move(job.state, UPLOADING)
        if moved or not job.files:
            job.files = [f.model_dump(mode="json") for f in msg.files]
            job.rows, job.summary, job.node = msg.rows, dict(msg.summary), msg.node
            job.warnings = _merge_text(job.warnings, msg.warnings)
            job.extracted_at = job.extracted_at or func.now()
        if moved:
            job.state = UPLOADING
    return moved


def _merge_text(current: list[str] | None, more: Sequence[str]) -> list[str]:
    merged = list(current or [])
    merged += [w for w in more if w not in merged]
    return merged


async def on_extract_uploaded(msg: ExtractUploaded, ports: SchedulerPorts) -> bool:
    files = [f.model_dump(mode="json") for f in msg.files]
    async with ports.sessions() as session:
        # the store's locations (with URLs) replace the staging paths
        moved = await _move(session, msg.job_id, NOTIFYING, uploaded_at=func.now(), files=files)
    if not moved:
        async with ports.sessions() as session, session.begin():
            job = await _job_for_update(session, msg.job_id)
            if job is None:
                _unknown("extract.uploaded", msg.job_id)
                return False
            if not may_move(job.state, NOTIFYING):
                return False
            job.state = NOTIFYING
            job.uploaded_at = func.now()
            job.files = files
    await _finish_if_email_blocked(ports, msg.push_date, msg.job_id)
    return True


async def _finish_if_email_blocked(ports: SchedulerPorts, push_date: dt.date, job_id: int) -> None:
    """A job now waiting for its email whose project has a failed extract may have been the push's last
    open job: the email waits for the next start, so the push ends. Checked after the move committed, as
    `on_failed` checks again after its failure committed, so whichever commits last sees both."""
    sibling = aliased(Job)
    async with ports.sessions() as session:
        blocked = await session.scalar(
            select(
                exists().where(
                    Job.id == job_id,
                    sibling.push_date == Job.push_date,
                    sibling.code == Job.code,
                    sibling.state == FAILED,
                )
            )
        )
    if blocked:
        async with ports.sessions() as session, session.begin():
            await _finish_if_done(session, push_date)


async def on_failed(
    push_date: dt.date, job_ids: Sequence[int], stage: str, reason: str, ports: SchedulerPorts
) -> list[int]:
    """Fail the given jobs (those not completed/failed yet) with the reason; finish the run if done."""
    changed: list[int] = []
    async with ports.sessions() as session, session.begin():
        for job_id in job_ids:
            job = await _job_for_update(session, job_id)
            if job is None:
                _unknown(f"{stage} failure", job_id)
                continue
            if not may_move(job.state, FAILED):
                continue
            job.state, job.reason = FAILED, f"{stage}: {reason}"
            changed.append(job_id)
    if changed:
        # after the commit: it then also sees a sibling's upload that committed meanwhile, whose own
        # check (`_finish_if_email_blocked`) ran before this failure was visible
        async with ports.sessions() as session, session.begin():
            await _finish_if_done(session, push_date)
        ports.kick()
        log.warning("push %s: job(s) %s failed at %s: %s", push_date, changed, stage, reason)
    return changed


async def on_extract_failed(msg: ExtractFailed, ports: SchedulerPorts) -> list[int]:
    return await on_failed(msg.push_date, [msg.job_id], msg.stage, msg.reason, ports)


async def on_project_notify_failed(msg: ProjectNotifyFailed, ports: SchedulerPorts) -> list[int]:
    return await on_failed(msg.push_date, msg.job_ids, "notify", f"{msg.project}: {msg.reason}", ports)


async def on_project_notified(msg: ProjectNotified, ports: SchedulerPorts) -> list[int]:
    """Complete the project's jobs: list rows first (idempotent), then the jobs and maybe the run."""
    async with ports.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.id.in_(msg.job_ids)))).scalars().all()
        row_ids = [
            i for j in jobs if j.state != FAILED or _failed_at_notify(j) for i in (j.list_row_ids or [])
        ]
    # The home node may be another database: complete its rows before recording the jobs as completed,
    # so a crash in between is redone by the redelivered message instead of being forgotten.
    if row_ids:
        await ports.lists.mark_completed(row_ids)
    changed: list[int] = []
    async with ports.sessions() as session, session.begin():
        # the project's jobs locked in one statement (id order), not one SELECT … FOR UPDATE per job
        locked = await _jobs_for_update(session, msg.job_ids)
        for job_id in msg.job_ids:
            job = locked.get(job_id)
            if job is None:
                _unknown("project.notified", job_id)
                continue
            if msg.warnings:
                job.warnings = _merge_text(job.warnings, msg.warnings)
            if job_id in changed:  # listed twice: completed by its first mention
                continue
            if _failed_at_notify(job):
                job.warnings = _merge_text(job.warnings, [f"completed after it had failed: {job.reason}"])
                job.reason = None
            elif not may_move(job.state, COMPLETED):
                continue
            changed.append(job_id)
        if changed:
            # one UPDATE for the project's jobs (the ORM sent one per job); rows still locked above.
            # Warnings and reasons changed above are flushed (the rare case) before it.
            await session.execute(
                update(Job)
                .where(Job.id.in_(changed))
                .values(state=COMPLETED, notified_at=func.now(), completed_at=func.now()),
                execution_options={"synchronize_session": False},
            )
        if changed and not await _finish_if_done(session, msg.push_date):
            await _reopen_if_all_completed(session, msg.push_date)
    if changed:
        ports.kick()
    return changed


async def auto_push_tick(
    ports: SchedulerPorts,
    calendar: PushCalendar,
    quiet_period: float,
    now: dt.datetime,
    start: Callable[[PushStart], Any],
) -> dt.date | None:
    """The periodic check: start the current push by itself when its list has been quiet long enough."""
    latest = calendar.latest_on_or_before(now.date())
    if latest is None:
        return None
    async with ports.sessions() as session:
        exists = await session.scalar(select(PushRun.id).where(PushRun.push_date == latest.date))
    if exists is not None:
        return None
    activity = await ports.lists.activity(latest.date)
    due = auto_start_due(now.date(), now, calendar, {latest.date: activity}, set(), quiet_period)
    if due is None:
        return None
    log.info("push %s: list quiet for %.0fs, starting the push", due, quiet_period)
    await start(PushStart(push_date=due, requested_by="scheduler"))
    return due
