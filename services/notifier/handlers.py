"""Notifier handlers: once every extract of a project in a push is uploaded, email the project once.

How "never the same email twice" is kept (issue 3), per (push, project), each step a transaction that
holds the project's advisory lock (`ledger.ProjectTx`):
1. record the upload (idempotent by job id); stop if the project still waits for extracts or its
   email already went out;
2. read the contacts from the project's node database (outside any lock);
3. claim: write one ledger row per recipient with status `sending`, and COMMIT, before sending;
4. deliver: under the lock, re-read the ledger; if rows are still `sending`, send one message to those
   recipients (cc the node address), then mark them `sent` / `simulated` / `refused` and stage
   `project.notified` in the outbox in the same transaction.
A second instance, or a redelivered message, finds the final rows and sends nothing and emits nothing.
The one window left: a crash (or lost connection) after the SMTP server took the message and before
step 4 commits leaves the rows `sending`; the redelivered message then sends the email once more, with
the same Message-ID (so mail clients may fold the two). That duplicate is possible only there; a lost
email is not possible, since rows become `sent` only after the server accepted the message.
A failed extract of the project (`extract.failed`) simply leaves the email waiting: it goes out when a
re-run of the push uploads that extract. Faults that retrying cannot cure (unknown node, broken
template, the mail server refusing the message for good) emit `project.notify_failed` with the reason,
so the push status shows it; claimed rows stay `sending` and a re-run after the fix sends them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from uuid import uuid4

from services.notifier.contacts import (
    ContactDirectory,
    ProjectInfo,
    Recipient,
    UnknownNode,
    choose_recipients,
)
from services.notifier.ledger import NotifierRepository, ProjectState, UploadRecord
from services.notifier.mailer import Mailer, MailRejected
from services.notifier.render import EmailTemplates, TemplateProblem, build_message, email_context
from shared.messages import (
    PROJECT_NOTIFIED,
    PROJECT_NOTIFY_FAILED,
    ExtractFailed,
    ExtractUploaded,
    ProjectNotified,
    ProjectNotifyFailed,
)

log = logging.getLogger("otn_push.notifier")

# faults that retrying cannot cure: they fail the project's jobs with the reason instead
PERMANENT_ERRORS = (UnknownNode, TemplateProblem, MailRejected)


@dataclass
class NotifierPorts:
    repo: NotifierRepository
    directory: ContactDirectory
    mailer: Mailer
    templates: EmailTemplates
    sender: str
    cc: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    status: str  # waiting | already-notified | late-job | notified | no-recipients | empty | failed
    event: ProjectNotified | None = None
    detail: list[str] = field(default_factory=list)


def notified_id(push_date: dt.date, project: str) -> str:
    return f"{PROJECT_NOTIFIED}:{push_date.isoformat()}:{project}"


def parse_cc(raw: str) -> list[str]:
    return [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]


async def handle_extract_failed(msg: ExtractFailed) -> Outcome:
    log.info(
        "%s failed at %s: the email of %s waits for a re-run", msg.extract.label, msg.stage, msg.extract.code
    )
    return Outcome("waiting", detail=[msg.extract.label])


async def handle_extract_uploaded(msg: ExtractUploaded, ports: NotifierPorts) -> Outcome:
    push_date, project = msg.push_date, msg.extract.code
    async with ports.repo.locked(push_date, project) as tx:
        new = await tx.record_upload(msg)
        state = await tx.state()
        if state.emailed:
            # an extract added to the push (or built again: a late list row, a re-push) after the
            # project's email went out: complete its job without a second email, and say so in the push
            # status; keyed by the job's attempt so a rebuild is answered and a redelivery is not
            attempt = state.attempts.get(msg.job_id, 1)
            if not new and attempt <= 1:  # first build (a job recorded with 0 attempts too)
                return Outcome("already-notified")
            late = ProjectNotified(
                push_date=push_date,
                project=project,
                job_ids=[msg.job_id],
                recipients=[],
                warnings=[
                    f"{msg.extract.label} was uploaded after {project}'s email for this push was sent; "
                    "it was not announced by email"
                ],
            )
            event_id = f"{notified_id(push_date, project)}:job:{msg.job_id}"
            if attempt > 1:
                event_id += f":{attempt}"
            if not await tx.emit(PROJECT_NOTIFIED, late, event_id):
                return Outcome("already-notified")
            return Outcome("late-job", late)
    if state.missing:
        log.info("%s uploaded; %s still waits for %s", msg.extract.label, project, ", ".join(state.missing))
        return Outcome("waiting", detail=state.missing)
    try:
        return await _notify_project(msg, ports)
    except PERMANENT_ERRORS as exc:
        return await _notify_failed(ports, push_date, project, f"{type(exc).__name__}: {exc}")


def _empty_labels(project: str, uploads: list[UploadRecord]) -> list[str]:
    return [f"{project},{u.year},{u.type}" for u in uploads if u.rows == 0]


async def _settle_empty(ports: NotifierPorts, push_date: dt.date, project: str) -> Outcome | None:
    """Every extract of the project in this push holds no detections: no email (there is nothing new to
    tell its researchers; the header-only files are still in the store), the jobs complete with the
    reason. None when there is something to email."""
    async with ports.repo.locked(push_date, project) as tx:
        state = await tx.state()
        if state.emailed:
            return Outcome("already-notified")
        empty = _empty_labels(project, state.uploads)
        if state.pending or not state.uploads or len(empty) < len(state.uploads):
            return None
        event = ProjectNotified(
            push_date=push_date,
            project=project,
            job_ids=state.job_ids,
            recipients=[],
            warnings=[f"{label} holds no detections: no email sent" for label in empty],
        )
        # one per round of uploads: a rebuilt job (next attempt) is answered again
        round_key = "-".join(f"{j}.{state.attempts.get(j, 1)}" for j in state.job_ids)
        if not await tx.emit(PROJECT_NOTIFIED, event, f"{notified_id(push_date, project)}:empty:{round_key}"):
            return Outcome("already-notified")
    log.info("%s: no detections in %s, no email sent", project, ", ".join(empty))
    return Outcome("empty", event)


async def _notify_project(msg: ExtractUploaded, ports: NotifierPorts) -> Outcome:
    push_date, project = msg.push_date, msg.extract.code
    settled = await _settle_empty(ports, push_date, project)
    if settled is not None:
        return settled
    info = await ports.directory.project(msg.node, project)
    warnings: list[str] = []
    if info is None:
        warnings.append(f"project {project} is not in node {msg.node}'s database: no contacts")
        info = ProjectInfo(code=project, node=msg.node.upper())
    recipients, contact_warnings = choose_recipients(info.contacts)
    warnings += contact_warnings
    for warning in warnings:
        log.warning("%s: %s", project, warning)

    if recipients:
        domain = ports.sender.rpartition("@")[2] or None
        async with ports.repo.locked(push_date, project) as tx:
            state = await tx.state()
            if state.emailed:
                return Outcome("already-notified")
            await tx.claim([r.email for r in recipients], make_msgid("otn-push", domain=domain))
    else:
        settled = await _settle_without_email(ports, push_date, project, warnings)
        if settled is not None:
            return settled

    async with ports.repo.locked(push_date, project) as tx:
        state = await tx.state()
        message_id = state.pending_message_id
        if state.emailed or message_id is None:
            return Outcome("already-notified")
        by_address = {r.email.lower(): r for r in recipients}
        to = [by_address.get(a.lower(), Recipient(name="", email=a)) for a in state.pending]
        message = _message(ports, info, push_date, to, state, message_id)
        warnings += [
            f"{label} holds no detections: not listed in the email"
            for label in _empty_labels(project, state.uploads)
        ]
        cc = [c for c in ports.cc if c.lower() not in {r.email.lower() for r in to}]
        result = await ports.mailer.send(
            message, recipients=[r.email for r in to] + cc, push_date=push_date, project=project
        )
        statuses = {r.email: ("refused" if r.email in result.refused else result.status) for r in to}
        for address, reason in result.refused.items():
            warnings.append(f"the mail server refused {address!r}: {reason}")
        await tx.mark(statuses, message_id, result.outbox_file)
        event = ProjectNotified(
            push_date=push_date,
            project=project,
            job_ids=state.job_ids,
            recipients=[a for a, s in statuses.items() if s != "refused"],
            warnings=warnings,
        )
        await tx.emit(PROJECT_NOTIFIED, event, notified_id(push_date, project))
    return Outcome("notified", event)


def _message(
    ports: NotifierPorts,
    info: ProjectInfo,
    push_date: dt.date,
    to: list[Recipient],
    state: ProjectState,
    message_id: str,
) -> EmailMessage:
    # an extract without detections has nothing to tell a researcher (its header-only file is still stored)
    uploads = [u for u in state.uploads if u.rows > 0]
    context = email_context(
        push_date=push_date, project=info, recipients=to, uploads=uploads, sender=ports.sender
    )
    rendered = ports.templates.render(context)
    return build_message(
        rendered,
        sender=ports.sender,
        to=to,
        cc=ports.cc,
        message_id=message_id,
        push_date=push_date,
        project=info.code,
    )


async def give_up(msg: ExtractUploaded, reason: str, ports: NotifierPorts) -> Outcome:
    """The last delivery failed too (e.g. SMTP down for good): fail the project's jobs with the reason,
    so the push ends and a re-run retries, instead of the jobs waiting in `notifying` for ever."""
    return await _notify_failed(ports, msg.push_date, msg.extract.code, reason)


async def _notify_failed(ports: NotifierPorts, push_date: dt.date, project: str, reason: str) -> Outcome:
    """Fail the project's jobs with the reason (shown in push status); a re-run of the push retries."""
    async with ports.repo.locked(push_date, project) as tx:
        state = await tx.state()
        if state.emailed:
            return Outcome("already-notified")
        event = ProjectNotifyFailed(
            push_date=push_date, project=project, job_ids=state.job_ids, reason=reason
        )
        # a unique id: after a fix, a re-run may fail again and must be able to say so again
        await tx.emit(
            PROJECT_NOTIFY_FAILED, event, f"{PROJECT_NOTIFY_FAILED}:{push_date}:{project}:{uuid4().hex}"
        )
    log.error("email for %s (push %s) cannot be sent: %s", project, push_date, reason)
    return Outcome("failed", detail=[reason])


async def _settle_without_email(
    ports: NotifierPorts, push_date: dt.date, project: str, warnings: list[str]
) -> Outcome | None:
    """Complete the project's jobs with a warning; None when an earlier claim still waits to be sent."""
    async with ports.repo.locked(push_date, project) as tx:
        state = await tx.state()
        if state.emailed:
            return Outcome("already-notified")
        if state.pending:
            return None
        warnings = [*warnings, f"{project} has no usable email address: no email sent"]
        await tx.mark({"": "skipped"}, "", None)
        event = ProjectNotified(
            push_date=push_date, project=project, job_ids=state.job_ids, recipients=[], warnings=warnings
        )
        await tx.emit(PROJECT_NOTIFIED, event, notified_id(push_date, project))
    log.warning("%s: no usable email address, nothing sent", project)
    return Outcome("no-recipients", event)
