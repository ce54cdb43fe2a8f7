"""Notifier handlers with in-memory fakes of its ports (repository, contact directory, mailer)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import BaseModel

from services.notifier.contacts import Contact, ProjectInfo, UnknownNode
from services.notifier.handlers import NotifierPorts, handle_extract_failed, handle_extract_uploaded
from services.notifier.ledger import ProjectState, ProjectTx, UploadRecord
from services.notifier.mailer import MailRejected, MailUnavailable, SendResult
from services.notifier.render import EmailTemplates
from shared.messages import ExtractFailed, ExtractKey, ExtractUploaded, FileInfo
from shared.nodeschema import ROLE_PI, ROLE_POC


@dataclass
class Tables:
    jobs: dict[int, tuple[dt.date, str, int, str]] = field(default_factory=dict)
    uploads: dict[int, tuple[dt.date, str, UploadRecord]] = field(default_factory=dict)
    ledger: dict[tuple[dt.date, str, str], tuple[str, str]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    outbox: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


class FakeTx:
    def __init__(self, tables: Tables, push_date: dt.date, project: str) -> None:
        self.t = tables
        self.push_date = push_date
        self.project = project

    async def record_upload(self, msg: ExtractUploaded) -> bool:
        new = msg.job_id not in self.t.uploads
        record = UploadRecord(
            msg.job_id,
            msg.extract.year,
            msg.extract.type,
            msg.rows,
            [f.model_dump(mode="json") for f in msg.files],
        )
        self.t.uploads[msg.job_id] = (msg.push_date, msg.extract.code, record)
        return new

    async def state(self) -> ProjectState:
        jobs = {
            jid: f"{code},{year},{typ}"
            for jid, (d, code, year, typ) in self.t.jobs.items()
            if d == self.push_date and code == self.project
        }
        uploads = [r for d, p, r in self.t.uploads.values() if d == self.push_date and p == self.project]
        uploaded = {u.job_id for u in uploads}
        return ProjectState(
            job_ids=sorted(set(jobs) | uploaded),
            missing=[label for jid, label in sorted(jobs.items()) if jid not in uploaded],
            uploads=sorted(uploads, key=lambda u: u.job_id),
            ledger={
                r: v for (d, p, r), v in self.t.ledger.items() if d == self.push_date and p == self.project
            },
            attempts={jid: self.t.attempts.get(jid, 1) for jid in jobs},
        )

    async def claim(self, recipients: Sequence[str], message_id: str) -> None:
        for r in recipients:
            self.t.ledger.setdefault((self.push_date, self.project, r), ("sending", message_id))

    async def mark(self, statuses: Mapping[str, str], message_id: str, outbox_file: str | None) -> None:
        for r, status in statuses.items():
            self.t.ledger[(self.push_date, self.project, r)] = (status, message_id)

    async def emit(self, routing_key: str, event: BaseModel, message_id: str) -> bool:
        if message_id in self.t.outbox:
            return False
        self.t.outbox[message_id] = (routing_key, event.model_dump(mode="json"))
        return True


class FakeRepo:
    """Transactions are copy-on-enter, commit-on-exit, serialised per (push, project) like the real one."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._locks: dict[tuple[dt.date, str], asyncio.Lock] = {}
        self.fail_on_mark: Exception | None = None

    def add_job(self, job_id: int, push_date: dt.date, code: str, year: int, typ: str) -> None:
        self.tables.jobs[job_id] = (push_date, code, year, typ)

    @asynccontextmanager
    async def locked(self, push_date: dt.date, project: str) -> AsyncIterator[ProjectTx]:
        lock = self._locks.setdefault((push_date, project), asyncio.Lock())
        async with lock:
            work = copy.deepcopy(self.tables)
            tx = FakeTx(work, push_date, project)
            if self.fail_on_mark is not None:
                error = self.fail_on_mark

                async def failing_mark(*args: Any, **kwargs: Any) -> None:
                    raise error

                tx.mark = failing_mark  # type: ignore[method-assign]
            yield tx
            self.tables = work


class FakeDirectory:
    def __init__(self, projects: dict[str, ProjectInfo]) -> None:
        self.projects = projects
        self.calls: list[tuple[str, str]] = []

    async def project(self, node: str, code: str) -> ProjectInfo | None:
        self.calls.append((node, code))
        return self.projects.get(code)


@dataclass
class Sent:
    message: EmailMessage
    recipients: list[str]
    project: str


class RecordingMailer:
    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.sent: list[Sent] = []
        self.fail_with: Exception | None = None
        self.refuse = refuse or {}
        self.delay = 0.0

    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], push_date: dt.date, project: str
    ) -> SendResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(Sent(message, list(recipients), project))
        return SendResult(status="sent", refused={a: r for a, r in self.refuse.items() if a in recipients})


# ---------------------------------------------------------------------------------------------- tests

PUSH = dt.date(2025, 6, 12)
NODE_CC = "otndc@dal.ca"


def info(code: str = "NSBS", contacts: list[Contact] | None = None) -> ProjectInfo:
    return ProjectInfo(
        code=code,
        node="OTN",
        longname="Nova Scotia Blue Sharks",
        citation="Doe J. (2022) Blue sharks of Nova Scotia.",
        contacts=tuple(
            contacts
            if contacts is not None
            else [
                Contact("Jane Doe", "jane.doe@dal.ca", ROLE_PI),
                Contact("Rob Roe", "rob@example.org", ROLE_POC),
                Contact("Jane Doe", "Jane.Doe@dal.ca", ROLE_POC),
                Contact("Tech Person", "tech@example.org", "technician"),
            ]
        ),
    )


def uploaded(
    job_id: int, code: str = "NSBS", year: int = 2022, typ: str = "t", rows: int = 10
) -> ExtractUploaded:
    stem = f"{code.lower()}_{'matched' if typ == 't' else 'qualified'}_detections_{year}"
    return ExtractUploaded(
        push_date=PUSH,
        job_id=job_id,
        extract=ExtractKey(code=code, year=year, type=typ),  # type: ignore[arg-type]
        node="OTN",
        rows=rows,
        files=[
            FileInfo(
                name=f"{stem}{ext}",
                path=f"data/repository/{code.lower()}/detection-extracts/{stem}{ext}",
                size=1000 + job_id,
                sha256="ab" * 32,
                url=f"https://store.example/{code.lower()}/{stem}{ext}",
            )
            for ext in (".zip", ".parquet")
        ],
    )


def ports(
    repo: FakeRepo, mailer: RecordingMailer, projects: dict[str, ProjectInfo] | None = None
) -> NotifierPorts:
    return NotifierPorts(
        repo=repo,
        directory=FakeDirectory(projects if projects is not None else {"NSBS": info()}),
        mailer=mailer,
        templates=EmailTemplates(),
        sender="otndc@dal.ca",
        cc=[NODE_CC],
    )


def repo_with_jobs(*jobs: tuple[int, str, int, str]) -> FakeRepo:
    repo = FakeRepo()
    for job_id, code, year, typ in jobs:
        repo.add_job(job_id, PUSH, code, year, typ)
    return repo


def addresses(message: EmailMessage, header: str) -> list[str]:
    return [a.addr_spec for a in message[header].addresses] if message[header] else []


async def test_email_waits_for_every_extract_of_the_project_then_goes_once() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"), (3, "HFX", 2022, "q"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)

    first = await handle_extract_uploaded(uploaded(1), p)
    assert first.status == "waiting" and first.detail == ["NSBS,2021,t"]
    assert mailer.sent == []

    second = await handle_extract_uploaded(uploaded(2, year=2021, rows=5), p)
    assert second.status == "notified"
    assert len(mailer.sent) == 1
    sent = mailer.sent[0]
    assert addresses(sent.message, "To") == ["jane.doe@dal.ca", "rob@example.org"]
    assert addresses(sent.message, "Cc") == [NODE_CC]
    assert sorted(sent.recipients) == sorted(["jane.doe@dal.ca", "rob@example.org", NODE_CC])
    text = sent.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for name in ("nsbs_matched_detections_2022.zip", "nsbs_matched_detections_2021.parquet"):
        assert name in text
    assert "hfx" not in text.lower()

    assert second.event is not None
    assert second.event.job_ids == [1, 2]
    assert second.event.recipients == ["jane.doe@dal.ca", "rob@example.org"]
    assert list(repo.tables.outbox) == [f"project.notified:{PUSH}:NSBS"]


async def test_redelivered_upload_sends_nothing_and_emits_nothing() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "notified"
    outbox = dict(repo.tables.outbox)
    again = await handle_extract_uploaded(uploaded(1), p)
    assert again.status == "already-notified"
    assert len(mailer.sent) == 1
    assert repo.tables.outbox == outbox


async def test_invalid_addresses_are_skipped_with_a_warning_and_the_others_get_mail() -> None:
    contacts = [
        Contact("Good Pi", "good@dal.ca", ROLE_PI),
        Contact("Broken", "not an address", ROLE_PI),
        Contact("Empty", "", ROLE_POC),
        Contact("Injected", "x@dal.ca\r\nBcc: evil@example.com", ROLE_POC),
    ]
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    out = await handle_extract_uploaded(uploaded(1), ports(repo, mailer, {"NSBS": info(contacts=contacts)}))
    assert out.status == "notified" and out.event is not None
    assert addresses(mailer.sent[0].message, "To") == ["good@dal.ca"]
    assert "evil@example.com" not in mailer.sent[0].recipients
    assert len(out.event.warnings) == 3
    assert any("'not an address'" in w for w in out.event.warnings)
    assert any("Empty" in w and "no email address" in w for w in out.event.warnings)


async def test_project_without_usable_address_completes_with_a_warning_and_no_mail() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer, {"NSBS": info(contacts=[Contact("Nobody", "nobody(at)dal", ROLE_PI)])})
    out = await handle_extract_uploaded(uploaded(1), p)
    assert out.status == "no-recipients" and out.event is not None
    assert mailer.sent == []
    assert out.event.recipients == [] and out.event.job_ids == [1]
    assert any("no usable email address" in w for w in out.event.warnings)
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "already-notified"
    assert len(repo.tables.outbox) == 1


async def test_unknown_project_is_a_warning_not_a_crash() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    out = await handle_extract_uploaded(uploaded(1), ports(repo, RecordingMailer(), {}))
    assert out.status == "no-recipients" and out.event is not None
    assert any("not in node OTN" in w for w in out.event.warnings)


async def test_smtp_down_keeps_the_claim_sends_later_exactly_once() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    mailer.fail_with = MailUnavailable("SMTP server unreachable (gave up after 4 attempts)")
    p = ports(repo, mailer)
    with pytest.raises(MailUnavailable):
        await handle_extract_uploaded(uploaded(1), p)
    # claimed before sending, never marked sent, nothing announced
    assert {s for s, _ in repo.tables.ledger.values()} == {"sending"}
    assert repo.tables.outbox == {}

    mailer.fail_with = None
    out = await handle_extract_uploaded(uploaded(1), p)
    assert out.status == "notified"
    assert len(mailer.sent) == 1
    assert {s for s, _ in repo.tables.ledger.values()} == {"sent"}
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "already-notified"
    assert len(mailer.sent) == 1


async def test_crash_between_send_and_record_resends_with_the_same_message_id() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    repo.fail_on_mark = ConnectionError("database connection lost")
    with pytest.raises(ConnectionError):
        await handle_extract_uploaded(uploaded(1), p)
    repo.fail_on_mark = None
    await handle_extract_uploaded(uploaded(1), p)
    # the documented window: one duplicate, recognisable by its Message-ID
    assert len(mailer.sent) == 2
    assert mailer.sent[0].message["Message-ID"] == mailer.sent[1].message["Message-ID"]
    assert len(repo.tables.outbox) == 1


async def test_concurrent_last_uploads_send_one_email() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"))
    mailer = RecordingMailer()
    mailer.delay = 0.01
    p = ports(repo, mailer)
    await handle_extract_uploaded(uploaded(1), p)
    results = await asyncio.gather(
        handle_extract_uploaded(uploaded(2, year=2021), p),
        handle_extract_uploaded(uploaded(2, year=2021), p),
        handle_extract_uploaded(uploaded(1), p),
    )
    assert sorted(r.status for r in results) == ["already-notified", "already-notified", "notified"]
    assert len(mailer.sent) == 1


async def test_failed_extract_holds_the_email_until_a_rerun_uploads_it() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    await handle_extract_uploaded(uploaded(1), p)
    failed = ExtractFailed(
        push_date=PUSH,
        job_id=2,
        extract=ExtractKey(code="NSBS", year=2021, type="t"),
        stage="extract",
        reason="x",
    )
    assert (await handle_extract_failed(failed)).status == "waiting"
    assert mailer.sent == [] and repo.tables.outbox == {}
    assert (await handle_extract_uploaded(uploaded(2, year=2021), p)).status == "notified"
    assert len(mailer.sent) == 1


async def test_extract_added_after_the_email_completes_without_a_second_email() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    await handle_extract_uploaded(uploaded(1), p)
    repo.add_job(9, PUSH, "NSBS", 2020, "t")
    late = await handle_extract_uploaded(uploaded(9, year=2020), p)
    assert late.status == "late-job" and late.event is not None
    assert late.event.job_ids == [9] and late.event.recipients == []
    assert len(mailer.sent) == 1
    again = await handle_extract_uploaded(uploaded(9, year=2020), p)
    assert again.status == "already-notified"
    assert len(repo.tables.outbox) == 2


async def test_an_extract_built_again_after_the_email_completes_without_a_second_email() -> None:
    """A late list row or a re-push builds a completed job again (same job id, next attempt): its
    upload must complete it again, or the job waits in `notifying` for ever."""
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "notified"
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "already-notified"  # redelivery
    repo.tables.attempts[1] = 2
    rebuilt = await handle_extract_uploaded(uploaded(1), p)
    assert rebuilt.status == "late-job" and rebuilt.event is not None and rebuilt.event.job_ids == [1]
    assert "project.notified:2025-06-12:NSBS:job:1:2" in repo.tables.outbox
    assert (await handle_extract_uploaded(uploaded(1), p)).status == "already-notified"
    assert len(mailer.sent) == 1


async def test_server_refused_recipient_is_recorded_and_reported() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    mailer = RecordingMailer(refuse={"rob@example.org": "550 no such user"})
    out = await handle_extract_uploaded(uploaded(1), ports(repo, mailer))
    assert out.event is not None
    assert out.event.recipients == ["jane.doe@dal.ca"]
    assert any("550 no such user" in w for w in out.event.warnings)
    assert repo.tables.ledger[(PUSH, "NSBS", "rob@example.org")][0] == "refused"


async def test_permanent_mail_failure_fails_the_jobs_with_the_reason_and_a_rerun_sends() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    await handle_extract_uploaded(uploaded(1), p)
    mailer.fail_with = MailRejected("SMTP server mail.example:25 answered 535 authentication failed")
    out = await handle_extract_uploaded(uploaded(2, year=2021), p)
    assert out.status == "failed"
    [(key, payload)] = repo.tables.outbox.values()
    assert key == "project.notify_failed"
    assert payload["job_ids"] == [1, 2] and "535 authentication failed" in payload["reason"]
    assert {s for s, _ in repo.tables.ledger.values()} == {"sending"}

    mailer.fail_with = None  # fixed; the push is started again and the upload comes round once more
    assert (await handle_extract_uploaded(uploaded(2, year=2021), p)).status == "notified"
    assert len(mailer.sent) == 1


async def test_unknown_node_fails_the_project_instead_of_looping() -> None:
    class NoNodes:
        async def project(self, node: str, code: str) -> ProjectInfo | None:
            raise UnknownNode(f"node {node!r} is not configured (OTN_PUSH_NODES: ACT)")

    repo = repo_with_jobs((1, "NSBS", 2022, "t"))
    p = ports(repo, RecordingMailer())
    p.directory = NoNodes()
    out = await handle_extract_uploaded(uploaded(1), p)
    assert out.status == "failed" and "not configured" in out.detail[0]
    assert [k for k, _ in repo.tables.outbox.values()] == ["project.notify_failed"]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def test_a_project_whose_extracts_hold_no_detections_gets_no_email() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    assert (await handle_extract_uploaded(uploaded(1, rows=0), p)).status == "waiting"
    outcome = await handle_extract_uploaded(uploaded(2, year=2021, rows=0), p)
    assert outcome.status == "empty" and outcome.event is not None
    assert mailer.sent == []
    assert outcome.event.job_ids == [1, 2] and outcome.event.recipients == []
    assert outcome.event.warnings == [
        "NSBS,2022,t holds no detections: no email sent",
        "NSBS,2021,t holds no detections: no email sent",
    ]
    assert (await handle_extract_uploaded(uploaded(2, year=2021, rows=0), p)).status == "already-notified"
    assert len(repo.tables.outbox) == 1


async def test_an_empty_extract_is_left_out_of_the_project_email() -> None:
    repo = repo_with_jobs((1, "NSBS", 2022, "t"), (2, "NSBS", 2021, "t"))
    mailer = RecordingMailer()
    p = ports(repo, mailer)
    await handle_extract_uploaded(uploaded(1, rows=5), p)
    outcome = await handle_extract_uploaded(uploaded(2, year=2021, rows=0), p)
    assert outcome.status == "notified" and outcome.event is not None and outcome.event.job_ids == [1, 2]
    assert len(mailer.sent) == 1
    text = body_text(mailer.sent[0].message)
    assert "nsbs_matched_detections_2022" in text and "nsbs_matched_detections_2021" not in text
    assert "0 rows" not in text
    assert "NSBS,2021,t holds no detections: not listed in the email" in outcome.event.warnings
