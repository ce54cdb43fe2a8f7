"""`otn-push push start|status`: send a push to the scheduler, watch it, and show where every job is."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections import Counter
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from otn_push.cli.broker_check import COMMAND_QUEUE_ROLE, broker_problem, scheduler_listening
from otn_push.cli.common import console, err_console, extract_format, fail, run, settings
from otn_push.cli.list_cmd import parse_date
from otn_push.cli.own_db import ensure_own_tables, own_tables_for_reading
from shared.broker import PublishError, make_broker, publish
from shared.calendar import PushCalendar
from shared.db import COMPLETED, FAILED, JOB_STATES, Job, PushRun, make_engine, make_sessionmaker
from shared.extract_list import ExtractListError, parse_extract
from shared.messages import PUSH_START, ExtractKey, PushStart
from shared.redact import redact_url
from shared.settings import Settings
from shared.topology import declare_topology, queue_name


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


async def push_status(sessions: async_sessionmaker[AsyncSession], push_date: dt.date) -> dict[str, Any]:
    """The run and its jobs, as plain data (also the `--json` output)."""
    async with sessions() as session:
        run_row = (
            await session.execute(select(PushRun).where(PushRun.push_date == push_date))
        ).scalar_one_or_none()
        jobs = (
            (await session.execute(select(Job).where(Job.push_date == push_date).order_by(Job.id)))
            .scalars()
            .all()
        )
    run_doc = None
    if run_row is not None:
        run_doc = {
            "id": run_row.id,
            "state": run_row.state,
            "format": run_row.format,
            "requested_by": run_row.requested_by,
            "started_at": _iso(run_row.started_at),
            "restarted_at": _iso(run_row.restarted_at),
            "finished_at": _iso(run_row.finished_at),
            "warnings": list(run_row.warnings or []),
        }
    return {
        "push_date": push_date.isoformat(),
        "run": run_doc,
        "counts": dict(Counter(j.state for j in jobs)),
        "jobs": [
            {
                "id": j.id,
                "extract": f"{j.code},{j.year},{j.type}",
                "node": j.node,
                "state": j.state,
                "reason": j.reason,
                "rows": j.rows,
                "attempts": j.attempts,
                "list_row_ids": list(j.list_row_ids or []),
                "files": [
                    {k: f.get(k) for k in ("name", "size", "sha256", "path", "url") if f.get(k) is not None}
                    for f in j.files or []
                ],
                "warnings": list(j.warnings or []),
            }
            for j in jobs
        ],
    }


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table(title="jobs by state", show_edge=False)
    for state in JOB_STATES:
        table.add_column(state, justify="right")
    table.add_row(*(str(counts.get(state, 0)) for state in JOB_STATES))
    return table


def project_warnings(jobs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The warnings every job of a project carries (the notifier's, about its contacts or its email),
    by project code: `push status` shows them once under the table instead of on each job's row."""
    by_project: dict[str, list[list[str]]] = {}
    for job in jobs:
        by_project.setdefault(job["extract"].split(",")[0], []).append(job["warnings"])
    shared = {}
    for code, lists in by_project.items():
        common = [w for w in lists[0] if all(w in other for other in lists[1:])]
        if common and len(lists) > 1:
            shared[code] = common
    return shared


def print_status(doc: dict[str, Any]) -> None:
    run_doc = doc["run"]
    if run_doc is None:
        console.print(f"no push run for {doc['push_date']} yet")
        return
    finished = f", finished {run_doc['finished_at'][:19]}" if run_doc["finished_at"] else ""
    console.print(
        f"push {doc['push_date']}: [bold]{run_doc['state']}[/] (format {run_doc['format']}, "
        f"started by {escape(run_doc['requested_by'])} {run_doc['started_at'][:19]}{finished})"
    )
    console.print(_counts_table(doc["counts"]))
    table = Table(title="jobs", show_lines=False)
    for column in ("id", "extract", "node", "state", "rows", "files", "reason / warnings"):
        table.add_column(column)
    shared = project_warnings(doc["jobs"])
    for job in doc["jobs"]:
        files = "\n".join(f"{f['name']} ({f['size']:,} B)" for f in job["files"])
        notes = [job["reason"]] if job["reason"] else []
        notes += [w for w in job["warnings"] if w not in shared.get(job["extract"].split(",")[0], [])]
        style = "red" if job["state"] == FAILED else ("green" if job["state"] == COMPLETED else "")
        table.add_row(
            str(job["id"]),
            escape(job["extract"]),
            escape(job["node"] or ""),
            job["state"],
            "" if job["rows"] is None else f"{job['rows']:,}",
            escape(files),
            escape("\n".join(notes)),
            style=style,
        )
    console.print(table)
    for code, warnings in shared.items():
        for warning in warnings:
            console.print(
                f"[yellow]warning:[/] {escape(code)} (every extract): {escape(warning)}", highlight=False
            )
    for warning in run_doc["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _manual_list(extracts: list[str], push_date: dt.date) -> list[ExtractKey] | None:
    if not extracts:
        return None
    keys, errors = [], []
    for entry in extracts:
        try:
            parsed = parse_extract(entry, max_year=push_date.year)
        except ExtractListError as exc:
            errors.append(str(exc))
            continue
        keys.append(parsed.key)
        for note in parsed.notes:
            console.print(escape(f"--extract {entry!r}: {note} -> {parsed.key.label}"), highlight=False)
    if errors:
        fail("; ".join(errors))
    return keys


async def send_start(cfg: Settings, cmd: PushStart) -> None:
    broker = make_broker(cfg)
    try:
        await broker.connect()
        await declare_topology(broker, cfg)
        await publish(broker, cfg, PUSH_START, cmd, f"{PUSH_START}:{cmd.push_date}:{uuid.uuid4().hex}")
    finally:
        await broker.stop()


async def wait_for_run(
    sessions: async_sessionmaker[AsyncSession], push_date: dt.date, since: dt.datetime, give_up: float | None
) -> dict[str, Any]:
    """Show live progress until the run (re)started after `since` is finished; returns the final status."""
    progress = Progress(
        TextColumn(f"push {push_date}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task: TaskID = progress.add_task("push", total=None)
    started = time.monotonic()
    hinted = False
    with Live(Group(progress, _counts_table({})), console=console, refresh_per_second=4) as live:
        while True:
            doc = await push_status(sessions, push_date)
            run_doc = doc["run"]
            taken = (
                run_doc is not None
                and max(
                    dt.datetime.fromisoformat(run_doc["started_at"]),
                    dt.datetime.fromisoformat(run_doc["restarted_at"] or run_doc["started_at"]),
                )
                >= since
            )
            counts = doc["counts"] if taken else {}
            total = sum(counts.values())
            done = counts.get(COMPLETED, 0) + counts.get(FAILED, 0)
            progress.update(task, total=total or None, completed=done)
            live.update(Group(progress, _counts_table(counts)))
            if taken and run_doc["state"] != "running":
                return doc
            elapsed = time.monotonic() - started
            if not taken and elapsed > 15 and not hinted:
                hinted = True
                err_console.print(
                    "still waiting for the scheduler to take the command: is `python -m services.scheduler` "
                    "running?"
                )
            if give_up is not None and elapsed > give_up:
                fail(f"push {push_date} not finished after {give_up:.0f}s (see `otn-push push status`)", 3)
            await asyncio.sleep(0.5)


async def _db_now(sessions: async_sessionmaker[AsyncSession]) -> dt.datetime:
    async with sessions() as session:
        now = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def _start_format(
    sessions: async_sessionmaker[AsyncSession], push_date: dt.date, wanted: str | None, default: str
) -> str:
    """The format to send: a push keeps its recorded format unless `--format` asks for another, which
    re-pushes a finished push (every extract rebuilt) and is refused while the push runs."""
    async with sessions() as session:
        found = (
            await session.execute(select(PushRun).where(PushRun.push_date == push_date))
        ).scalar_one_or_none()
    if found is None:
        return wanted or default
    if wanted is None or wanted == found.format:
        return found.format
    if found.state == "running":
        fail(
            f"push {push_date} is running in format {found.format}: its files would mix formats; "
            f"wait until it has ended, then `otn-push push start --push-date {push_date} --format {wanted}` "
            "re-pushes it (every extract rebuilt)"
        )
    console.print(
        f"re-push of {push_date} in format {wanted} (its files are {found.format}): every extract is "
        "built, uploaded and completed again; researchers already emailed get no second email",
        highlight=False,
    )
    return wanted


def register(app: typer.Typer) -> None:
    push = typer.Typer(help="Start a push and follow it.")
    app.add_typer(push, name="push")

    @push.command("start")
    def start(
        push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD)."),
        extract: list[str] = typer.Option(
            [], "--extract", help="CODE,YEAR,TYPE; repeat for a manual list (default: the push's list rows)."
        ),
        fmt_option: str | None = typer.Option(
            None,
            "--format",
            help="2025 or legacy (default: the push's format, else OTN_PUSH_EXTRACT_FORMAT, else 2025).",
        ),
        wait: bool = typer.Option(
            False, "--wait", help="Follow the push until it ends; exit 1 if any failed."
        ),
        timeout: float | None = typer.Option(
            None, "--timeout", help="With --wait: give up after this many s."
        ),
    ) -> None:
        """Send a push to the scheduler (confirmed by the broker).

        Starting it again does only what is not done: failed extracts are retried, completed ones are
        left alone (unless list rows were added for them since: they are built again). It keeps the
        push's format; --format with another one re-pushes a finished push in that format."""
        cfg = settings()
        day = parse_date(push_date)
        wanted = extract_format(fmt_option, cfg) if fmt_option is not None else None
        extracts = _manual_list(extract, day)
        off_calendar = PushCalendar(cfg.push_dates).not_a_push_date(day)
        if off_calendar is not None:  # a mistyped date would start an empty push that looks like success
            err_console.print(f"[yellow]warning:[/] --push-date {escape(off_calendar)}", highlight=False)

        async def go() -> int:
            await ensure_own_tables(cfg)
            engine = make_engine(cfg.own_database_url)
            sessions = make_sessionmaker(engine)
            try:
                since = await _db_now(sessions)
                fmt = await _start_format(sessions, day, wanted, cfg.extract_format)
                cmd = PushStart(push_date=day, extracts=extracts, format=fmt, requested_by="cli")  # type: ignore[arg-type]
                try:
                    await send_start(cfg, cmd)
                except PublishError as exc:
                    fail(f"cannot send the push to the scheduler via {redact_url(cfg.amqp_url)}: {exc}")
                except Exception as exc:  # connecting: unreachable, unknown vhost, refused user
                    fail(broker_problem(cfg.amqp_url, exc))
                what = f"{len(cmd.extracts)} listed extract(s)" if cmd.extracts else "the push's list rows"
                console.print(f"push {day} sent to the scheduler ({what}, format {fmt})")
                if not await scheduler_listening(cfg, checks=5 if wait else 1):
                    queue = queue_name(cfg, COMMAND_QUEUE_ROLE)
                    note = (
                        f"no scheduler is consuming {queue}: the push waits there until "
                        "`python -m services.scheduler` runs (with the same OTN_PUSH_EXCHANGE)"
                    )
                    if wait:
                        fail(note, 3)
                    err_console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)
                if not wait:
                    return 0
                doc = await wait_for_run(sessions, day, since, timeout)
            finally:
                await engine.dispose()
            print_status(doc)
            if doc["run"]["format"] != fmt:
                fail(f"the scheduler did not take format {fmt}: the push's files are {doc['run']['format']}")
            return 0 if doc["run"]["state"] == "completed" else 1

        raise typer.Exit(run(go()))

    @push.command("status")
    def status(
        push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Jobs by state with their reasons, rows and files."""
        cfg = settings()
        day = parse_date(push_date)

        async def go() -> dict[str, Any]:
            async with own_tables_for_reading(cfg) as engine:
                return await push_status(make_sessionmaker(engine), day)

        doc = run(go())
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
        else:
            print_status(doc)
        if doc["run"] is None:
            raise typer.Exit(4)
