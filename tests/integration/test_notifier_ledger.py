"""The email ledger on the real PostgreSQL: concurrent notifier instances send a project's email once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from services.notifier.contacts import Contact, ProjectInfo
from services.notifier.handlers import NotifierPorts, handle_extract_uploaded
from services.notifier.ledger import SqlNotifierRepository
from services.notifier.mailer import MailUnavailable, SendResult
from services.notifier.render import EmailTemplates
from shared.db import EmailSent, Job, OutboxMessage, PushRun, Upload, make_engine, make_sessionmaker
from shared.messages import ExtractKey, ExtractUploaded, FileInfo
from shared.nodeschema import ROLE_PI, ROLE_POC

pytestmark = pytest.mark.integration

PUSH = dt.date(2024, 10, 17)


class SlowMailer:
    """Holds each send for a moment so that concurrent instances really overlap."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.fail: Exception | None = None

    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], push_date: dt.date, project: str
    ) -> SendResult:
        await asyncio.sleep(0.05)
        if self.fail is not None:
            raise self.fail
        self.sent.append(list(recipients))
        return SendResult(status="sent")


class Directory:
    async def project(self, node: str, code: str) -> ProjectInfo | None:
        return ProjectInfo(
            code=code,
            node=node,
            contacts=(
                Contact("Pat Pi", "pat@example.org", ROLE_PI),
                Contact("Cy Poc", "cy@example.org", ROLE_POC),
            ),
        )


def uploaded(job_id: int, year: int) -> ExtractUploaded:
    name = f"proj_matched_detections_{year}.zip"
    return ExtractUploaded(
        push_date=PUSH,
        job_id=job_id,
        extract=ExtractKey(code="PROJ", year=year, type="t"),
        node="OTN",
        rows=1,
        files=[
            FileInfo(
                name=name, path=f"data/repository/proj/detection-extracts/{name}", size=1, sha256="0" * 64
            )
        ],
    )


async def test_concurrent_instances_send_once_and_a_failed_send_stays_claimed(own_db: str) -> None:
    engines = [make_engine(own_db) for _ in range(3)]
    try:
        makers = [make_sessionmaker(e) for e in engines]
        async with makers[0]() as session, session.begin():
            run = PushRun(push_date=PUSH)
            session.add(run)
            await session.flush()
            session.add_all(
                [
                    Job(id=21, run_id=run.id, push_date=PUSH, code="PROJ", year=2023, type="t"),
                    Job(id=22, run_id=run.id, push_date=PUSH, code="PROJ", year=2024, type="t"),
                ]
            )
        mailer = SlowMailer()

        def instance(maker: Any) -> NotifierPorts:
            return NotifierPorts(
                repo=SqlNotifierRepository(maker),
                directory=Directory(),
                mailer=mailer,
                templates=EmailTemplates(),
                sender="otndc@dal.ca",
                cc=["otndc@dal.ca"],
            )

        ports = [instance(m) for m in makers]
        assert (await handle_extract_uploaded(uploaded(21, 2023), ports[0])).status == "waiting"

        # the SMTP server is down for the first attempt: rows stay claimed, nothing is announced
        mailer.fail = MailUnavailable("down")
        with pytest.raises(MailUnavailable):
            await handle_extract_uploaded(uploaded(22, 2024), ports[0])
        async with makers[0]() as session:
            statuses = (await session.execute(select(EmailSent.recipient, EmailSent.status))).all()
            assert sorted(statuses) == [("cy@example.org", "sending"), ("pat@example.org", "sending")]
            assert (await session.execute(select(OutboxMessage))).first() is None
        mailer.fail = None

        # three instances get the (redelivered) last upload, and the first one again, at the same time
        outcomes = await asyncio.gather(
            handle_extract_uploaded(uploaded(22, 2024), ports[0]),
            handle_extract_uploaded(uploaded(22, 2024), ports[1]),
            handle_extract_uploaded(uploaded(21, 2023), ports[2]),
        )
        assert sorted(o.status for o in outcomes) == ["already-notified", "already-notified", "notified"]
        assert len(mailer.sent) == 1
        assert sorted(mailer.sent[0]) == ["cy@example.org", "otndc@dal.ca", "pat@example.org"]
        async with makers[0]() as session:
            statuses = (await session.execute(select(EmailSent.recipient, EmailSent.status))).all()
            assert sorted(statuses) == [("cy@example.org", "sent"), ("pat@example.org", "sent")]
            notes = (await session.execute(select(OutboxMessage.message_id, OutboxMessage.payload))).all()
            assert [n.message_id for n in notes] == [f"project.notified:{PUSH}:PROJ"]
            assert notes[0].payload["job_ids"] == [21, 22]
            uploads = (await session.execute(select(Upload.job_id).order_by(Upload.job_id))).scalars().all()
            assert list(uploads) == [21, 22]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_record_upload_tells_new_from_repeated_and_keeps_the_latest_files(own_db: str) -> None:
    engine = make_engine(own_db)
    try:
        repo = SqlNotifierRepository(make_sessionmaker(engine))
        first = uploaded(31, 2023)
        changed = first.model_copy(update={"rows": 7})
        async with repo.locked(PUSH, "PROJ") as tx:
            assert await tx.record_upload(first) is True
        async with repo.locked(PUSH, "PROJ") as tx:
            assert await tx.record_upload(changed) is False
            state = await tx.state()
        assert [(u.job_id, u.rows) for u in state.uploads] == [(31, 7)]
        assert state.job_ids == [31] and state.missing == [] and not state.emailed
    finally:
        await engine.dispose()
