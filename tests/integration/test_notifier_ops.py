"""The ops email (issue 5) against real RabbitMQ, PostgreSQL and an in-process SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from services.notifier.app import build_app
from shared.broker import publish
from shared.db import COMPLETED, FAILED, Job, PushRun, make_engine, make_sessionmaker
from shared.messages import PUSH_COMPLETED, PushCompleted
from shared.settings import Settings
from tests.integration.conftest import Rabbit, eventually
from tests.smtp_sink import Inbox, running_smtp_server

pytestmark = pytest.mark.integration

PUSH = dt.date(2025, 6, 12)


async def seed(own_db: str) -> int:
    engine = make_engine(own_db)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            run = PushRun(push_date=PUSH, state="failed")
            session.add(run)
            await session.flush()
            session.add(
                Job(
                    run_id=run.id,
                    push_date=PUSH,
                    code="NSBS",
                    year=2022,
                    type="t",
                    node="OTN",
                    state=COMPLETED,
                )
            )
            session.add(
                Job(
                    run_id=run.id,
                    push_date=PUSH,
                    code="HFX",
                    year=2021,
                    type="q",
                    node="OTN",
                    state=FAILED,
                    reason="node OTN unreachable",
                )
            )
            return int(run.id)
    finally:
        await engine.dispose()


def read_page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


async def test_one_ops_email_per_round_with_report_link(
    make_settings: Any, make_nodes: Any, own_db: str, rabbit: Rabbit, tmp_path: Path
) -> None:
    run_id = await seed(own_db)
    nodes = await make_nodes("OTN")
    report_dir = tmp_path / "reports"
    with running_smtp_server() as (inbox, port):
        settings: Settings = make_settings(
            nodes=nodes,
            send_mail=True,
            smtp_host="127.0.0.1",
            smtp_port=port,
            ops_email="ops@node.example.org, duty@node.example.org",
            report_url="https://node.example.org/push-reports/{push_date}.html",
            report_dir=report_dir,
        )
        app = build_app(settings, broker=rabbit.broker(settings))
        await app.start()
        try:
            sender = await rabbit.connected(settings)
            done = PushCompleted(push_date=PUSH, run_id=run_id, completed=1, failed=1)
            first_id = f"{PUSH_COMPLETED}:{PUSH}:3"
            await publish(sender, settings, PUSH_COMPLETED, done, first_id)

            def ops_mail(box: Inbox) -> list[Any]:
                return [(r, m) for r, m in box.snapshot() if m["X-OTN-Push"] == f"{PUSH} push-report"]

            async def one_sent() -> bool:
                return len(ops_mail(inbox)) == 1

            await eventually(one_sent, "the ops email sent")
            recipients, message = ops_mail(inbox)[0]
            assert sorted(recipients) == ["duty@node.example.org", "ops@node.example.org"]
            assert "2025-06-12" in message["Subject"] and "1 failed" in message["Subject"]
            text = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            link = "https://node.example.org/push-reports/2025-06-12.html"
            assert "HFX,2021,q" in text and "node OTN unreachable" in text and link in text
            assert f'href="{link}"' in html
            assert "HFX" in read_page(report_dir / "2025-06-12.html")

            # the same completion again (a redelivery) sends nothing; a later round (a re-run) does, once;
            # one consumer with prefetch 1 takes them in order, so the later one proves the repeat was seen
            await publish(sender, settings, PUSH_COMPLETED, done, first_id)
            await publish(sender, settings, PUSH_COMPLETED, done, f"{PUSH_COMPLETED}:{PUSH}:5")

            async def two_sent() -> bool:
                return len(ops_mail(inbox)) >= 2

            await eventually(two_sent, "the later round's ops email sent")
            assert len(ops_mail(inbox)) == 2
        finally:
            await app.stop()
