"""The notifier service against real RabbitMQ, PostgreSQL and an in-process SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from services.notifier.app import build_app
from services.notifier.mailer import Backoff, MailRejected, MailUnavailable, SmtpMailer
from shared.broker import publish
from shared.db import EmailSent, Job, OutboxMessage, PushRun, make_engine, make_sessionmaker
from shared.messages import (
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    ExtractFailed,
    ExtractKey,
    ExtractUploaded,
    FileInfo,
)
from shared.nodes import connection
from shared.nodeschema import CR, ROLE_PI, ROLE_POC, C, P
from shared.settings import Settings
from tests.integration.conftest import Rabbit, eventually
from tests.smtp_sink import Inbox, free_port, running_smtp_server

pytestmark = pytest.mark.integration

PUSH = dt.date(2025, 6, 12)
NODE_ADDRESS = "otndc@dal.ca"
INJECTED_NAME = "Rob Roe\r\nBcc: victim@evil.example\r\nX-Injected: yes"

# project -> contacts (name, email, role); the technician must never get mail
PROJECTS: dict[str, list[tuple[str, str, str]]] = {
    "NSBS": [
        ("Jane Doe", "jane.doe@dal.ca", ROLE_PI),
        (INJECTED_NAME, "rob@example.org", ROLE_POC),
        ("Broken Address", "broken@@example", ROLE_POC),
        ("Jane Doe", "JANE.DOE@dal.ca", ROLE_POC),
        ("Tech Nician", "tech@example.org", "technician"),
    ],
    "HFX": [
        ("Fred Whoriskey", "fred@example.org", ROLE_PI),
        ("Jane Doe", "jane.doe@dal.ca", ROLE_POC),
    ],
    "BARE": [("Nobody", "nobody-at-example.org", ROLE_PI)],
    "LAST": [("Lee Last", "lee@example.org", ROLE_PI)],
}
# job id -> (project, year, type)
JOBS = {
    1: ("NSBS", 2022, "t"),
    2: ("NSBS", 2021, "t"),
    3: ("HFX", 2022, "q"),
    4: ("BARE", 2022, "u"),
    5: ("LAST", 2022, "t"),
}


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with running_smtp_server() as server:
        yield server


async def seed_node(url: str) -> None:
    async with connection("OTN", url) as conn:
        for code, contacts in PROJECTS.items():
            await conn.execute(
                f"INSERT INTO {P.table} ({P.code}, {P.node}, {P.longname}, {P.citation}) "
                "VALUES ($1, 'OTN', $2, $3)",
                code,
                f"<i>{code}</i> project",
                f"{code} citation",
            )
            for position, (name, email, role) in enumerate(contacts):
                contact_id = await conn.fetchval(
                    f"""INSERT INTO {C.table} ({C.name}, {C.email}) VALUES ($1, $2)
                        ON CONFLICT ({C.name}, {C.email}) DO UPDATE SET {C.name} = EXCLUDED.{C.name}
                        RETURNING {C.id}""",
                    name,
                    email,
                )
                await conn.execute(
                    f"INSERT INTO {CR.table} ({CR.project}, {CR.contact}, {CR.role}, {CR.position}) "
                    "VALUES ($1, $2, $3, $4)",
                    code,
                    contact_id,
                    role,
                    position,
                )


async def seed_jobs(own_db: str) -> None:
    engine = make_engine(own_db)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            run = PushRun(push_date=PUSH)
            session.add(run)
            await session.flush()
            for job_id, (code, year, typ) in JOBS.items():
                session.add(
                    Job(id=job_id, run_id=run.id, push_date=PUSH, code=code, year=year, type=typ, node="OTN")
                )
    finally:
        await engine.dispose()


def uploaded(job_id: int) -> ExtractUploaded:
    code, year, typ = JOBS[job_id]
    token = {"t": "matched", "q": "qualified", "u": "unqualified"}[typ]
    stem = f"{code.lower()}_{token}_detections_{year}"
    return ExtractUploaded(
        push_date=PUSH,
        job_id=job_id,
        extract=ExtractKey(code=code, year=year, type=typ),  # type: ignore[arg-type]
        node="OTN",
        rows=100 * job_id,
        files=[
            FileInfo(
                name=stem + ext,
                path=f"data/repository/{code.lower()}/detection-extracts/{stem}{ext}",
                size=4096,
                sha256="cd" * 32,
                url=f"https://members.oceantrack.org/data/repository/{code.lower()}/detection-extracts/{stem}{ext}",
            )
            for ext in (".zip", ".parquet")
        ],
    )


async def published_notifications(own_db: str) -> list[dict[str, Any]]:
    engine = make_engine(own_db)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = (
                await session.execute(
                    select(OutboxMessage.payload)
                    .where(
                        OutboxMessage.routing_key == "project.notified",
                        OutboxMessage.published_at.is_not(None),
                    )
                    .order_by(OutboxMessage.id)
                )
            ).scalars()
            return list(rows)
    finally:
        await engine.dispose()


async def ledger(own_db: str) -> set[tuple[str, str, str]]:
    engine = make_engine(own_db)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(select(EmailSent.project, EmailSent.recipient, EmailSent.status))
            return {(r.project, r.recipient, r.status) for r in rows}
    finally:
        await engine.dispose()


async def test_one_email_per_project_to_exactly_its_contacts_once(
    make_settings: Any, make_nodes: Any, own_db: str, rabbit: Rabbit, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    nodes = await make_nodes("OTN")
    await seed_node(nodes["OTN"])
    await seed_jobs(own_db)
    settings: Settings = make_settings(
        nodes=nodes, send_mail=True, smtp_host="127.0.0.1", smtp_port=port, smtp_cc=NODE_ADDRESS
    )
    app = build_app(settings, broker=rabbit.broker(settings))
    await app.start()
    try:
        sender = await rabbit.connected(settings)

        async def send(job_id: int) -> None:
            await publish(sender, settings, EXTRACT_UPLOADED, uploaded(job_id), f"test:uploaded:{job_id}")

        # NSBS's second extract fails first: its email waits for the re-run
        failed = ExtractFailed(
            push_date=PUSH,
            job_id=2,
            extract=ExtractKey(code="NSBS", year=2021, type="t"),
            stage="extract",
            reason="x",
        )
        await publish(sender, settings, EXTRACT_FAILED, failed, "test:failed:2")
        for job_id in (1, 3, 4):
            await send(job_id)

        async def hfx_and_bare_done() -> bool:
            return {n["project"] for n in await published_notifications(own_db)} == {"HFX", "BARE"}

        await eventually(hfx_and_bare_done, "HFX emailed and BARE settled")
        assert inbox.for_push(PUSH, "NSBS") == []

        await send(2)  # the re-run uploads NSBS's failed extract

        async def nsbs_done() -> bool:
            return len(await published_notifications(own_db)) == 3

        await eventually(nsbs_done, "NSBS emailed")

        assert len(inbox.snapshot()) == 2
        [(rcpts, nsbs)] = inbox.for_push(PUSH, "NSBS")
        assert sorted(rcpts) == sorted(["jane.doe@dal.ca", "rob@example.org", NODE_ADDRESS])
        assert [a.addr_spec for a in nsbs["To"].addresses] == ["jane.doe@dal.ca", "rob@example.org"]
        assert [a.addr_spec for a in nsbs["Cc"].addresses] == [NODE_ADDRESS]
        assert nsbs["From"] == settings.smtp_from
        # the injection attempt stays inside one display name
        assert nsbs["Bcc"] is None and nsbs["X-Injected"] is None
        assert "victim@evil.example" not in rcpts
        assert nsbs["To"].addresses[1].display_name == "Rob Roe Bcc: victim@evil.example X-Injected: yes"
        text = nsbs.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = nsbs.get_body(("html",)).get_content()  # type: ignore[union-attr]
        for year in (2021, 2022):
            for ext in (".zip", ".parquet"):
                name = f"nsbs_matched_detections_{year}{ext}"
                assert name in text and name in html
        assert "hfx" not in text.lower() and "hfx" not in html.lower()
        assert "&lt;i&gt;NSBS&lt;/i&gt; project" in html and "<i>NSBS</i>" not in html

        [(rcpts, hfx)] = inbox.for_push(PUSH, "HFX")
        assert sorted(rcpts) == sorted(["fred@example.org", "jane.doe@dal.ca", NODE_ADDRESS])
        assert "hfx_qualified_detections_2022.zip" in hfx.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "nsbs" not in hfx.get_body(("plain",)).get_content().lower()  # type: ignore[union-attr]

        notes = {n["project"]: n for n in await published_notifications(own_db)}
        assert notes["NSBS"]["job_ids"] == [1, 2]
        assert sorted(notes["NSBS"]["recipients"]) == ["jane.doe@dal.ca", "rob@example.org"]
        assert any("broken@@example" in w for w in notes["NSBS"]["warnings"])
        assert notes["BARE"]["recipients"] == [] and notes["BARE"]["job_ids"] == [4]
        assert any("no usable email address" in w for w in notes["BARE"]["warnings"])
        assert await ledger(own_db) == {
            ("NSBS", "jane.doe@dal.ca", "sent"),
            ("NSBS", "rob@example.org", "sent"),
            ("HFX", "fred@example.org", "sent"),
            ("HFX", "jane.doe@dal.ca", "sent"),
            ("BARE", "", "skipped"),
        }

        # the same uploads again (a re-run, or the broker redelivering): nothing new is sent or emitted.
        # LAST's upload comes after them on the same queue, so once its email arrives they were all handled.
        for job_id in (1, 2, 3, 4, 1):
            await send(job_id)
        await send(5)

        async def last_done() -> bool:
            return len(inbox.for_push(PUSH, "LAST")) == 1 and len(await published_notifications(own_db)) == 4

        await eventually(last_done, "LAST emailed")
        assert [m["X-OTN-Push"] for _, m in inbox.snapshot()].count(f"{PUSH} NSBS") == 1
        assert len(inbox.snapshot()) == 3
        assert len(await published_notifications(own_db)) == 4
    finally:
        await app.stop()


class Grumpy:
    """An SMTP server that refuses one address for good and defers every message (451)."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("gone@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "451 try again later"


def simple_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = NODE_ADDRESS
    message["To"] = "jane.doe@dal.ca"
    message["Subject"] = "test"
    message.set_content("hello")
    return message


async def test_smtp_mailer_classifies_server_answers(make_settings: Any) -> None:
    port = free_port()
    controller = Controller(Grumpy(), hostname="127.0.0.1", port=port)
    controller.start()
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    try:
        settings: Settings = make_settings(send_mail=True, smtp_host="127.0.0.1", smtp_port=port)
        mailer = SmtpMailer(settings, Backoff(attempts=2, base_delay=0.1, sleep=sleep))
        # every recipient refused for good: reported per address, nothing raised
        result = await mailer.send(
            simple_message(), recipients=["gone@example.org"], push_date=PUSH, project="P"
        )
        assert result.refused == {"gone@example.org": "550 no such user"}
        # 451 on the message: transient, retried, then handed back
        with pytest.raises(MailUnavailable, match="451"):
            await mailer.send(simple_message(), recipients=["jane.doe@dal.ca"], push_date=PUSH, project="P")
        assert delays == [0.1]
        # STARTTLS demanded but not offered: a settings problem, not retried
        tls = SmtpMailer(
            settings.model_copy(update={"smtp_starttls": True}), Backoff(attempts=3, sleep=sleep)
        )
        with pytest.raises(MailRejected, match="STARTTLS"):
            await tls.send(simple_message(), recipients=["jane.doe@dal.ca"], push_date=PUSH, project="P")
        assert delays == [0.1]
    finally:
        controller.stop()
