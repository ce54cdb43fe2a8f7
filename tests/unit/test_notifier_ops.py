"""The ops email handler (issue 5) with in-memory fakes: one email per completion round, link or not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.notifier.ops import (
    FailedExtract,
    OpsPorts,
    PushSummary,
    check_ops_settings,
    handle_push_completed,
    ops_recipients,
)
from services.notifier.render import EmailTemplates
from shared.messages import PushCompleted
from tests.unit.test_notifier_handlers import FakeRepo, RecordingMailer

DAY = dt.date(2026, 3, 19)
DONE = PushCompleted(push_date=DAY, run_id=7, completed=5, failed=1)
MID = f"push.completed:{DAY}:12"


async def summary(push_date: dt.date) -> PushSummary:
    assert push_date == DAY
    return PushSummary("failed", [FailedExtract("NSBS,2022,t", "OTN", "node OTN unreachable")])


def make_ports(recipients: list[str], url: str | None = None, **kw: object) -> OpsPorts:
    return OpsPorts(
        repo=FakeRepo(),
        mailer=RecordingMailer(),
        templates=EmailTemplates(),
        sender="otndc@dal.ca",
        recipients=recipients,
        summary=summary,
        report_url=url,
        **kw,  # type: ignore[arg-type]
    )


def bodies(ports: OpsPorts) -> tuple[str, str, str]:
    sent = ports.mailer.sent  # type: ignore[attr-defined]
    message = sent[0].message
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return str(message["Subject"]), text, html


async def test_one_email_with_counts_failures_and_link() -> None:
    ports = make_ports(["ops@node.org", "duty@node.org"], "https://node.example.org/r/{push_date}.html")
    outcome = await handle_push_completed(DONE, MID, ports)
    assert outcome.status == "sent"
    sent = ports.mailer.sent  # type: ignore[attr-defined]
    assert len(sent) == 1
    assert sorted(sent[0].recipients) == ["duty@node.org", "ops@node.org"]
    subject, text, html = bodies(ports)
    assert "2026-03-19" in subject and "5 completed" in subject and "1 failed" in subject
    assert "NSBS,2022,t" in text and "node OTN unreachable" in text
    link = "https://node.example.org/r/2026-03-19.html"
    assert link in text and f'href="{link}"' in html
    assert outcome.report_url == link


async def test_no_link_without_report_url() -> None:
    ports = make_ports(["ops@node.org"])
    await handle_push_completed(DONE, MID, ports)
    _, text, html = bodies(ports)
    assert "http" not in text and "href" not in html
    assert "otn-push report --push-date 2026-03-19" in text


async def test_nothing_when_off() -> None:
    ports = make_ports([])
    outcome = await handle_push_completed(DONE, MID, ports)
    assert outcome.status == "off"
    assert ports.mailer.sent == []  # type: ignore[attr-defined]
    assert ports.repo.tables.ledger == {}  # type: ignore[attr-defined]


async def test_redelivery_sends_nothing_new_a_later_round_does() -> None:
    ports = make_ports(["ops@node.org"])
    await handle_push_completed(DONE, MID, ports)
    again = await handle_push_completed(DONE, MID, ports)
    assert again.status == "already-sent"
    assert len(ports.mailer.sent) == 1  # type: ignore[attr-defined]
    later = await handle_push_completed(DONE, f"push.completed:{DAY}:15", ports)
    assert later.status == "sent"
    assert len(ports.mailer.sent) == 2  # type: ignore[attr-defined]
    keys = {(d, p, r) for d, p, r in ports.repo.tables.ledger}  # type: ignore[attr-defined]
    assert keys == {(DAY, "push-report:12", "ops@node.org"), (DAY, "push-report:15", "ops@node.org")}


async def test_report_written_before_sending(tmp_path: Path) -> None:
    written: list[Path] = []

    async def write(push_date: dt.date, out: Path) -> None:
        written.append(out)

    ports = make_ports(["ops@node.org"], report_dir=tmp_path, write_report=write)
    await handle_push_completed(DONE, MID, ports)
    assert written == [tmp_path / "2026-03-19.html"]


def test_settings_checked() -> None:
    assert ops_recipients(" a@x.org; b@x.org, A@x.org ") == ["a@x.org", "b@x.org"]
    assert check_ops_settings(["a@x.org"], "https://x/{push_date}.html") == []
    problems = check_ops_settings(["not an address"], "https://x/report.html")
    assert any("OTN_PUSH_OPS_EMAIL" in p for p in problems)
    assert any("OTN_PUSH_REPORT_URL" in p for p in problems)


@pytest.mark.parametrize("mid", [None, "something-else"])
async def test_round_falls_back_to_run_id(mid: str | None) -> None:
    ports = make_ports(["ops@node.org"])
    await handle_push_completed(DONE, mid, ports)
    assert {p for _, p, _ in ports.repo.tables.ledger} == {"push-report:run7"}  # type: ignore[attr-defined]


async def test_report_that_cannot_be_written_does_not_stop_the_email(tmp_path: Path) -> None:
    async def write(push_date: dt.date, out: Path) -> None:
        raise OSError("disk full")

    ports = make_ports(["ops@node.org"], report_dir=tmp_path, write_report=write)
    outcome = await handle_push_completed(DONE, MID, ports)
    assert outcome.status == "sent"
    assert len(ports.mailer.sent) == 1  # type: ignore[attr-defined]
