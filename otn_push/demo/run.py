"""`otn-push demo`: a generated network, the four services as processes, one push watched to its end.

Steps: pre-flight; drop and recreate the demo node databases (only `otn_push_demo_*` ones); generate the
network; migrate the own tables; fresh folders under `var/demo/`; start the services with the demo's
environment and wait until each consumes; start the push; show jobs by state until every job is
completed or failed; print what was made and where; stop the services. Logs stay in `var/demo/logs/`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aio_pika
import asyncpg
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from otn_push.demo.generate import DEFAULT_DETECTIONS, NetworkSummary, generate_network
from services.uploader.store_choice import make_store
from shared.calendar import PUBLISHED_PUSH_DATES
from shared.db import COMPLETED, FAILED, JOB_STATES, EmailSent, Job, PushRun, make_engine, make_sessionmaker
from shared.messages import PushStart
from shared.nodes import asyncpg_dsn, connection, database_name, init_schema
from shared.redact import redact_text
from shared.settings import Settings

DEMO_PREFIX = "otn_push_demo_"
DEMO_EXCHANGE = "otn.push.demo"
SERVICES = ("scheduler", "extractor", "uploader", "notifier")
CONSUMES = {
    "scheduler": ("scheduler.commands", "scheduler.events"),
    "extractor": ("extractor.jobs",),
    "uploader": ("uploader.files",),
    "notifier": ("notifier.uploads",),
}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why in one line."""


def demo_exchange(settings: Settings) -> str:
    """The demo's exchange: its own, never the push's, so a demo never consumes a real push's work."""
    if "exchange" not in settings.model_fields_set:
        return DEMO_EXCHANGE
    # already a demo's (the README's `OTN_PUSH_EXCHANGE=otn.push.demo` to watch it): not `….demo.demo`
    return settings.exchange if settings.exchange.endswith(".demo") else f"{settings.exchange}.demo"


def demo_push_date(today: dt.date | None = None) -> dt.date:
    """The latest published push date up to today."""
    today = today or dt.date.today()
    past = [d for d in PUBLISHED_PUSH_DATES if d <= today]
    return max(past) if past else PUBLISHED_PUSH_DATES[0]


@dataclass
class DemoPaths:
    base: Path

    @property
    def store(self) -> Path:
        return self.base / "store"

    @property
    def staging(self) -> Path:
        return self.base / "staging"

    @property
    def outbox(self) -> Path:
        return self.base / "outbox"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    def fresh(self) -> None:
        for folder in (self.store, self.staging, self.outbox, self.logs):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)


def demo_environment(
    settings: Settings, paths: DemoPaths, push_date: dt.date, exchange: str = DEMO_EXCHANGE
) -> dict[str, str]:
    """The environment of the services and of every step: the demo's own exchange, folders, nodes."""
    env = {
        "OTN_PUSH_NODES": ";".join(f"{name}={url}" for name, url in settings.nodes.items()),
        "OTN_PUSH_HOME_NODE": settings.home_node,
        "OTN_PUSH_DATABASE_URL": settings.home_url,
        "OTN_PUSH_AMQP_URL": settings.amqp_url,
        "OTN_PUSH_EXCHANGE": exchange,
        "OTN_PUSH_STORE_DIR": str(paths.store.resolve()),
        "OTN_PUSH_STAGING_DIR": str(paths.staging.resolve()),
        "OTN_PUSH_OUTBOX_DIR": str(paths.outbox.resolve()),
        "OTN_PUSH_PUSH_DATES": push_date.isoformat(),
        "OTN_PUSH_AUTO_PUSH": "false",
        # simulate unless the user chose (environment or .env)
        "OTN_PUSH_SEND_MAIL": str("send_mail" in settings.model_fields_set and settings.send_mail).lower(),
    }
    return env | store_environment(settings)


def store_environment(settings: Settings) -> dict[str, str]:
    """The user's document store (environment or .env), passed on to the services: the demo publishes
    into a Plone or WebDAV store when OTN_PUSH_STORE says so, else into its own folder."""
    env = {"OTN_PUSH_STORE": settings.store, "OTN_PUSH_STORE_TIMEOUT": str(settings.store_timeout)}
    if settings.store_url:
        env["OTN_PUSH_STORE_URL"] = settings.store_url
    values: dict[str, object] = {
        "OTN_PUSH_PLONE_URL": settings.plone_url,
        "OTN_PUSH_PLONE_USER": settings.plone_user,
        "OTN_PUSH_PLONE_PASSWORD": settings.plone_password,
        "OTN_PUSH_PLONE_PATH": settings.plone_path,
        "OTN_PUSH_PLONE_NODE_FOLDERS": str(settings.plone_node_folders).lower(),
        "OTN_PUSH_WEBDAV_URL": settings.webdav_url,
        "OTN_PUSH_WEBDAV_USER": settings.webdav_user,
        "OTN_PUSH_WEBDAV_PASSWORD": settings.webdav_password,
    }
    for key, value in values.items():
        if isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif value is not None:
            env[key] = str(value)
    return env


def demo_settings(env: dict[str, str]) -> Settings:
    return Settings(
        **{key.removeprefix("OTN_PUSH_").lower(): value for key, value in env.items()}  # type: ignore[arg-type]
    )


async def recreate_nodes(nodes: dict[str, str]) -> None:
    """Drop and recreate the demo node databases with the OTN-style schema; never touches other databases."""
    for node, url in nodes.items():
        name = database_name(url)
        if not name.startswith(DEMO_PREFIX):
            raise DemoError(
                f"node {node} database {name!r} is not a demo database ({DEMO_PREFIX}*); the demo drops its "
                "databases, so it only runs on the default OTN_PUSH_NODES"
            )
    for node, url in nodes.items():
        name = database_name(url)
        maintenance = asyncpg_dsn(url).rsplit("/", 1)[0] + "/postgres"
        admin = await asyncpg.connect(maintenance)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        async with connection(node, url) as conn:
            await init_schema(conn)


async def delete_demo_queues(settings: Settings) -> None:
    """A second run starts clean: no message of an earlier demo is left in the demo's queues."""
    from shared.topology import QUEUES, dlq_name, queue_name

    conn = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        for role in QUEUES:
            for name in (queue_name(settings, role), dlq_name(settings, role)):
                channel = await conn.channel()
                try:
                    await channel.queue_delete(name)
                except aio_pika.exceptions.ChannelClosed:
                    pass  # did not exist
                finally:
                    if not channel.is_closed:
                        await channel.close()
    finally:
        await conn.close()


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    handle: TextIO = field(repr=False)

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(text)


def service_command(name: str) -> list[str]:
    """How a service runs: the same command in the demo, the tests and docker-compose.yml."""
    return [sys.executable, "-m", f"services.{name}"]


def start_service(name: str, env: dict[str, str], log: Path, root: Path) -> Service:
    """One service as a process of its own, its output in `log`."""
    handle = log.open("w")
    process = subprocess.Popen(
        service_command(name),
        cwd=root,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Service(name, process, log, handle)


def start_services(env: dict[str, str], paths: DemoPaths, root: Path) -> list[Service]:
    return [start_service(name, env, paths.logs / f"{name}.log", root) for name in SERVICES]


def check_alive(services: list[Service]) -> None:
    for svc in services:
        code = svc.process.poll()
        if code is not None:
            raise DemoError(
                f"the {svc.name} service exited with code {code}; its log ({svc.log}) ends with:\n"
                + svc.tail()
            )


async def consumers(settings: Settings, queue: str) -> int:
    """Consumers on a queue (0 while it does not exist)."""
    conn = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await conn.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        result = declared.declaration_result
        return int(result.consumer_count or 0)
    finally:
        await conn.close()


async def wait_consuming(settings: Settings, services: list[Service], limit: float = 90.0) -> None:
    from shared.topology import queue_name

    deadline = time.monotonic() + limit
    waiting = {svc.name: list(CONSUMES[svc.name]) for svc in services}
    while waiting:
        check_alive(services)
        for name, roles in list(waiting.items()):
            counts = [await consumers(settings, queue_name(settings, role)) for role in roles]
            if all(counts):
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"services not consuming after {limit:.0f}s: {', '.join(waiting)} (see logs)")
        await asyncio.sleep(0.5)


async def start_push(settings: Settings, push_date: dt.date) -> None:
    """What `otn-push push start --push-date D` does: send the command to the scheduler."""
    from otn_push.cli.push_cmd import send_start

    await send_start(settings, PushStart(push_date=push_date, requested_by="demo"))


async def job_counts(sessions: Any, push_date: dt.date) -> tuple[Counter[str], str | None]:
    """Jobs of the push by state, and the state of its run (None before the scheduler recorded it)."""
    async with sessions() as session:
        rows = await session.execute(
            select(Job.state, func.count()).where(Job.push_date == push_date).group_by(Job.state)
        )
        run_state = await session.scalar(select(PushRun.state).where(PushRun.push_date == push_date))
        return Counter({state: int(n) for state, n in rows.all()}), run_state


def progress_view(counts: Counter[str], expected: int, progress: Progress, task: Any) -> Group:
    total = max(sum(counts.values()), expected)
    done = counts[COMPLETED] + counts[FAILED]
    progress.update(task, total=total, completed=done)
    table = Table(title="jobs by state", show_edge=False)
    for state in JOB_STATES:
        table.add_column(state, justify="right")
    table.add_row(*(str(counts[state]) for state in JOB_STATES))
    return Group(progress, table)


async def watch_push(
    settings: Settings,
    push_date: dt.date,
    expected: int,
    services: list[Service],
    console: Console,
    limit: float,
) -> None:
    engine = make_engine(settings.own_database_url)
    sessions = make_sessionmaker(engine)
    progress = Progress(
        TextColumn("push {task.fields[date]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    )  # fmt: skip
    task = progress.add_task("push", total=expected, date=push_date.isoformat())
    deadline = time.monotonic() + limit
    try:
        counts: Counter[str] = Counter()
        with Live(
            progress_view(counts, expected, progress, task), console=console, refresh_per_second=4
        ) as live:
            while True:
                check_alive(services)
                counts, run_state = await job_counts(sessions, push_date)
                live.update(progress_view(counts, expected, progress, task))
                jobs = sum(counts.values())
                finished = counts[COMPLETED] + counts[FAILED] == jobs
                if finished and ((jobs and jobs >= expected) or run_state in (COMPLETED, FAILED)):
                    return
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the push did not finish within {limit:.0f}s "
                        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'no jobs yet'})"
                    )
                await asyncio.sleep(0.5)
    finally:
        console.print()
        await engine.dispose()


async def report(settings: Settings, push_date: dt.date, paths: DemoPaths, console: Console) -> bool:
    """Print extracts, emails and failures; True when every job completed."""
    engine = make_engine(settings.own_database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            jobs = (
                (await session.execute(select(Job).where(Job.push_date == push_date).order_by(Job.id)))
                .scalars()
                .all()
            )
            emails = (
                (await session.execute(select(EmailSent).where(EmailSent.push_date == push_date)))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    extracts = Table(title=f"extracts of the push of {push_date}")
    for column in ("extract", "state", "rows", "files"):
        extracts.add_column(column, justify="right" if column == "rows" else "left")
    for job in jobs:
        names = [str(f.get("name", "?")) for f in job.files or []]
        stems = dict.fromkeys(name.rsplit(".", 1)[0] for name in names)
        files = "; ".join(
            f"{stem} ({' '.join('.' + n.rsplit('.', 1)[1] for n in names if n.startswith(stem + '.'))})"
            for stem in stems
        )
        rows = "" if job.rows is None else f"{job.rows:,}"
        extracts.add_row(f"{job.code},{job.year},{job.type}", job.state, rows, files)
    console.print(extracts)
    if settings.store == "plone":
        folder = f"{settings.plone_url}/{settings.plone_path.strip('/')}"
    elif settings.store == "webdav":
        folder = str(settings.webdav_url)
    else:
        folder = f"{paths.store.resolve()}/data/repository"
    console.print(f"files: in {folder}/<code>/detection-extracts/", highlight=False)
    mode = "sent by SMTP" if settings.send_mail else "simulated"
    projects: dict[str, list[EmailSent]] = {}
    for email in sorted(emails, key=lambda e: e.id):
        projects.setdefault(email.project, []).append(email)
    if not projects:
        console.print("emails: none sent (no extract reached its email)", highlight=False)
    else:
        console.print(
            f"emails: {len(projects)}, one per project, to {len(emails)} recipients ({mode})", highlight=False
        )
    for project, sent in projects.items():
        where = sorted({Path(e.outbox_file).name for e in sent if e.outbox_file})
        to = ", ".join(e.recipient for e in sent)
        console.print(f"  {project}: {to}" + (f" -> {', '.join(where)}" if where else ""), highlight=False)
    if projects and not settings.send_mail:
        console.print(f"  the .eml files are in {paths.outbox.resolve()}/{push_date}/", highlight=False)
    failed = [job for job in jobs if job.state != COMPLETED]
    for job in failed:
        reason = redact_text(job.reason or "no reason recorded", settings.secrets())
        console.print(
            f"[red]not completed[/] {job.code},{job.year},{job.type} ({job.state}): {escape(reason)}"
        )
    warnings = [w for job in jobs for w in job.warnings or []]
    for warning in dict.fromkeys(warnings):
        console.print(f"[yellow]warning[/] {escape(redact_text(warning, settings.secrets()))}")
    console.print(f"service logs: {paths.logs.resolve()}/")
    return bool(jobs) and not failed


def stop_services(services: list[Service], grace: float = 15.0) -> None:
    for svc in services:
        if svc.process.poll() is None:
            svc.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for svc in services:
        try:
            svc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            svc.process.kill()
            svc.process.wait()
        svc.handle.close()


async def prepare(
    settings: Settings, push_date: dt.date, *, detections: int, seed: int, console: Console
) -> NetworkSummary:
    """Recreate the demo nodes, generate the network, migrate the own tables."""
    from shared.migrations import upgrade_async

    await recreate_nodes(settings.nodes)
    with console.status("generating the demo network"):
        summary = await generate_network(
            settings.nodes,
            seed=seed,
            push_date=push_date,
            detections=detections,
            home_node=settings.home_node,
        )
    await upgrade_async(settings.own_database_url)
    await delete_demo_queues(settings)
    return summary


def describe(summary: NetworkSummary, console: Console) -> None:
    nodes = ", ".join(
        f"{node} ({c['projects']} projects, {c['detections']:,} detections)"
        for node, c in summary.per_node.items()
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.by_relationship.items()))
    console.print(f"demo network (seed {summary.seed}): {nodes}")
    console.print(
        f"  years {summary.years[0]}-{summary.years[-1]}; matches: {kinds}; "
        f"{summary.cross_node_matches:,} across nodes; "
        f"{len(summary.extracts)} extracts listed for {summary.push_date}"
    )


def run_demo(
    console: Console,
    *,
    root: Path,
    detections: int = DEFAULT_DETECTIONS,
    seed: int = 7,
    push_date: dt.date | None = None,
    timeout: float = 900.0,
    base: Settings | None = None,
    exchange: str = DEMO_EXCHANGE,
    folder: Path | None = None,
) -> int:
    """The whole demo; returns the exit code (0 = every extract completed).

    `base` (default: the settings from the environment) gives the node databases and the broker; tests
    pass their own, with their own `exchange` and `folder` (default `var/demo` under `root`).
    """
    base = base or Settings()
    push_date = push_date or demo_push_date()
    paths = DemoPaths(folder or root / "var" / "demo")
    paths.fresh()
    env = demo_environment(base, paths, push_date, exchange)
    settings = demo_settings(env)
    make_store(settings)  # a store setting missing or malformed stops here, before any database is touched
    summary = asyncio.run(prepare(settings, push_date, detections=detections, seed=seed, console=console))
    describe(summary, console)
    services = start_services(env, paths, root)
    try:
        with console.status("starting the services"):
            asyncio.run(wait_consuming(settings, services))
        console.print(f"services consuming: {', '.join(SERVICES)}; starting the push of {push_date}")
        # the demo's queues hang off its own exchange: say how to watch them from another terminal
        cli = "otn-push" if shutil.which("otn-push") else str(Path(sys.executable).parent / "otn-push")
        console.print(f"watch it: OTN_PUSH_EXCHANGE={exchange} {cli} status --watch", soft_wrap=True)
        asyncio.run(start_push(settings, push_date))
        asyncio.run(watch_push(settings, push_date, len(summary.extracts), services, console, timeout))
        ok = asyncio.run(report(settings, push_date, paths, console))
    finally:
        with console.status("stopping the services"):
            stop_services(services)
    return 0 if ok else 1
