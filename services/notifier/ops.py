"""The ops email (issue 5): when a push finishes, its operators get one summary email with a report link.

Off unless `OTN_PUSH_OPS_EMAIL` names addresses. One email per completion round: the ledger (`emails`)
is keyed by (push date, `push-report:<round>`, recipient), where the round is the generation in the
`push.completed` message id (`push.completed:<date>:<generation>`; the generation grows with every
re-run), so a redelivered `push.completed` sends nothing new and a later round after a re-run sends a
new email. Like the project email, rows are claimed (`sending`) and committed before sending and
marked `sent` / `simulated` after; a crash between the two resends once with the same Message-ID.
With `OTN_PUSH_REPORT_DIR` set, the report (`<push date>.html`) is written there before sending, so the
link of `OTN_PUSH_REPORT_URL` (which the operator serves from that folder) works with no manual step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from otn_push.report.data import read_report
from otn_push.report.output import write_atomically
from otn_push.report.page import render_report
from services.notifier.contacts import Recipient, valid_address
from services.notifier.ledger import NotifierRepository
from services.notifier.mailer import Mailer
from services.notifier.render import EmailTemplates, build_message
from shared.db import COMPLETED, FAILED, Job, PushRun
from shared.messages import PUSH_COMPLETED, PushCompleted
from shared.settings import Settings

log = logging.getLogger("otn_push.notifier")

LEDGER_PROJECT = "push-report"


@dataclass(frozen=True)
class FailedExtract:
    extract: str
    node: str | None
    reason: str | None


@dataclass(frozen=True)
class PushSummary:
    state: str  # completed | failed (the run's state)
    failures: list[FailedExtract]


SummaryReader = Callable[[dt.date], Awaitable[PushSummary]]
ReportWriter = Callable[[dt.date, Path], Awaitable[None]]


@dataclass
class OpsPorts:
    repo: NotifierRepository
    mailer: Mailer
    templates: EmailTemplates
    sender: str
    recipients: list[str]  # empty: the ops email is off
    summary: SummaryReader
    report_url: str | None = None
    report_dir: Path | None = None
    write_report: ReportWriter | None = None


@dataclass
class OpsOutcome:
    status: str  # off | already-sent | sent | simulated
    recipients: list[str] = field(default_factory=list)
    report_url: str | None = None


def completion_round(msg: PushCompleted, message_id: str | None) -> str:
    """The generation from `push.completed:<date>:<generation>`; else the run id (a message not from
    the scheduler's outbox)."""
    prefix = f"{PUSH_COMPLETED}:{msg.push_date.isoformat()}:"
    if message_id and message_id.startswith(prefix) and message_id[len(prefix) :]:
        return message_id[len(prefix) :]
    return f"run{msg.run_id}"


def report_link(template: str | None, push_date: dt.date) -> str | None:
    return template.replace("{push_date}", push_date.isoformat()) if template else None


async def handle_push_completed(msg: PushCompleted, message_id: str | None, ports: OpsPorts) -> OpsOutcome:
    if not ports.recipients:
        return OpsOutcome("off")
    push_date = msg.push_date
    key = f"{LEDGER_PROJECT}:{completion_round(msg, message_id)}"
    domain = ports.sender.rpartition("@")[2] or None
    async with ports.repo.locked(push_date, key) as tx:
        state = await tx.state()
        if state.emailed:
            return OpsOutcome("already-sent")
        if not state.pending:
            await tx.claim(ports.recipients, make_msgid("otn-push-ops", domain=domain))

    summary = await ports.summary(push_date)
    if ports.report_dir is not None and ports.write_report is not None:
        out = ports.report_dir / f"{push_date.isoformat()}.html"
        try:
            await ports.write_report(push_date, out)
        except Exception as exc:  # the summary matters more than the page: send it anyway
            log.warning(
                "push report of %s not written to %s (%s); sending the ops email",
                push_date,
                out,
                type(exc).__name__,
            )
    url = report_link(ports.report_url, push_date)
    context: dict[str, Any] = {
        "push_date": push_date.isoformat(),
        "state": summary.state,
        "completed": msg.completed,
        "failed": msg.failed,
        "failures": summary.failures,
        "report_url": url,
    }
    rendered = ports.templates.render(context, prefix="ops_")

    async with ports.repo.locked(push_date, key) as tx:
        state = await tx.state()
        mid = state.pending_message_id
        if state.emailed or mid is None:
            return OpsOutcome("already-sent")
        to = [Recipient(name="", email=a) for a in state.pending]
        message = build_message(
            rendered,
            sender=ports.sender,
            to=to,
            cc=[],
            message_id=mid,
            push_date=push_date,
            project=LEDGER_PROJECT,
        )
        result = await ports.mailer.send(
            message, recipients=[r.email for r in to], push_date=push_date, project=LEDGER_PROJECT
        )
        statuses = {r.email: ("refused" if r.email in result.refused else result.status) for r in to}
        await tx.mark(statuses, mid, result.outbox_file)
    for address, reason in result.refused.items():
        log.warning("ops email for push %s: the mail server refused %r: %s", push_date, address, reason)
    log.info("ops email for push %s sent to %s", push_date, ", ".join(statuses))
    return OpsOutcome(result.status, [a for a, s in statuses.items() if s != "refused"], url)


def sql_summary(sessionmaker: async_sessionmaker[Any]) -> SummaryReader:
    async def read(push_date: dt.date) -> PushSummary:
        async with sessionmaker() as session:
            run = await session.scalar(select(PushRun.state).where(PushRun.push_date == push_date))
            jobs = (
                await session.execute(
                    select(Job.code, Job.year, Job.type, Job.node, Job.reason)
                    .where(Job.push_date == push_date, Job.state == FAILED)
                    .order_by(Job.code, Job.year, Job.type)
                )
            ).all()
        failures = [FailedExtract(f"{j.code},{j.year},{j.type}", j.node, j.reason) for j in jobs]
        return PushSummary(state=str(run or (FAILED if failures else COMPLETED)), failures=failures)

    return read


def report_writer(settings: Settings, sessionmaker: async_sessionmaker[Any]) -> ReportWriter:
    """The same page as `otn-push report`, written atomically (a reader never sees half a file)."""

    async def write(push_date: dt.date, out: Path) -> None:
        data = await read_report(
            sessionmaker, settings.nodes, push_date, settings.push_dates, dt.datetime.now(dt.UTC)
        )
        await asyncio.to_thread(write_atomically, out, render_report(data))
        log.info("push report of %s written to %s", push_date, out)

    return write


def ops_recipients(raw: str) -> list[str]:
    seen: dict[str, str] = {}
    for a in raw.replace(";", ",").split(","):
        if a.strip():
            seen.setdefault(a.strip().lower(), a.strip())
    return list(seen.values())


def check_ops_settings(recipients: Sequence[str], report_url: str | None) -> list[str]:
    """Problems with the ops settings, each naming the setting (empty: fine)."""
    problems = [
        f"setting OTN_PUSH_OPS_EMAIL: {a!r} is not a valid email address"
        for a in recipients
        if not valid_address(a)
    ]
    if report_url and "{push_date}" not in report_url:
        problems.append(f"setting OTN_PUSH_REPORT_URL: {report_url!r} has no {{push_date}} placeholder")
    return problems
