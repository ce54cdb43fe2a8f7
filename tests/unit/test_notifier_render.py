"""Email rendering and building: safe headers, escaped HTML, overridable templates, mailers."""

from __future__ import annotations

import datetime as dt
import socket
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from services.notifier.contacts import Contact, ProjectInfo, Recipient, choose_recipients, valid_address
from services.notifier.ledger import UploadRecord
from services.notifier.mailer import Backoff, MailUnavailable, SimulatedMailer, SmtpMailer
from services.notifier.render import (
    EmailTemplates,
    TemplateProblem,
    build_message,
    clean_header,
    email_context,
)
from shared.nodeschema import ROLE_PI, ROLE_POC
from shared.settings import Settings

PUSH = dt.date(2025, 6, 12)
EVIL_NAME = "Eve <b>Bold</b>\r\nBcc: victim@example.com\r\nX-Evil: 1"
EVIL_TITLE = "<script>alert('x')</script> Sharks\nSubject: spoofed"


def upload(job_id: int = 1, year: int = 2022, typ: str = "t", rows: int = 3) -> UploadRecord:
    return UploadRecord(
        job_id=job_id,
        year=year,
        type=typ,
        rows=rows,
        files=[
            {
                "name": f"nsbs_matched_detections_{year}.zip",
                "path": f"data/repository/nsbs/detection-extracts/nsbs_matched_detections_{year}.zip",
                "size": 2048,
                "sha256": "00" * 32,
                "url": f"https://store.example/nsbs_matched_detections_{year}.zip?a=1&b=2",
            }
        ],
    )


def project(title: str = "Blue Sharks") -> ProjectInfo:
    return ProjectInfo(code="NSBS", node="OTN", longname=title, citation="Doe J. & Roe R. (2022)")


def render_and_build(
    recipients: list[Recipient], info: ProjectInfo, templates: EmailTemplates | None = None
) -> EmailMessage:
    context = email_context(
        push_date=PUSH, project=info, recipients=recipients, uploads=[upload()], sender="otndc@dal.ca"
    )
    rendered = (templates or EmailTemplates()).render(context)
    built = build_message(
        rendered,
        sender="otndc@dal.ca",
        to=recipients,
        cc=["otndc@dal.ca", "jane@dal.ca"],
        message_id="<1.otn-push@dal.ca>",
        push_date=PUSH,
        project="NSBS",
    )
    # what a receiving server would see, parsed back from the wire form
    parsed = message_from_bytes(built.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_header_injection_in_names_and_project_fields_is_neutralised() -> None:
    recipients = [
        Recipient(EVIL_NAME, "eve@dal.ca", ["principal investigator"]),
        Recipient("Jane", "jane@dal.ca", ["point of contact"]),
    ]
    message = render_and_build(recipients, project(EVIL_TITLE))
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@dal.ca", "jane@dal.ca"]
    assert message["To"].addresses[0].display_name == "Eve <b>Bold</b> Bcc: victim@example.com X-Evil: 1"
    # cc never repeats a To address
    assert [a.addr_spec for a in message["Cc"].addresses] == ["otndc@dal.ca"]
    assert message["Subject"].startswith("OTN Data Push 2025-06-12")
    assert len(message.get_all("Subject") or []) == 1


def test_html_part_escapes_markup_and_text_part_keeps_it_plain() -> None:
    message = render_and_build(
        [Recipient(EVIL_NAME, "eve@dal.ca", ["principal investigator"])], project(EVIL_TITLE)
    )
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt;" in html
    assert "?a=1&amp;b=2" in html
    assert "Doe J. &amp; Roe R. (2022)" in html
    assert "Dear Eve <b>Bold</b>" in text
    for body in (html, text):
        assert "nsbs_matched_detections_2022.zip" in body and "2022" in body


def test_greeting_uses_pi_names_then_points_of_contact() -> None:
    both = [
        Recipient("Ann Pi", "a@dal.ca", ["principal investigator"]),
        Recipient("Bo Pi", "b@dal.ca", ["principal investigator", "point of contact"]),
        Recipient("Cy Poc", "c@dal.ca", ["point of contact"]),
    ]
    ctx = email_context(push_date=PUSH, project=project(), recipients=both, uploads=[], sender="x@dal.ca")
    assert ctx["greeting"] == "Ann Pi and Bo Pi"
    ctx = email_context(push_date=PUSH, project=project(), recipients=both[2:], uploads=[], sender="x@dal.ca")
    assert ctx["greeting"] == "Cy Poc"


def test_extracts_are_listed_by_year_then_type() -> None:
    uploads = [upload(1, 2022, "q", 5), upload(2, 2021, "t", 7), upload(3, 2022, "t", 9)]
    ctx = email_context(push_date=PUSH, project=project(), recipients=[], uploads=uploads, sender="x@dal.ca")
    assert [(e["year"], e["type"], e["rows"]) for e in ctx["extracts"]] == [
        (2021, "t", 7),
        (2022, "t", 9),
        (2022, "q", 5),
    ]


def test_templates_dir_overrides_only_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("Your {{ project.code }} files, push of {{ push_date_long }}")
    templates = EmailTemplates(tmp_path)
    message = render_and_build([Recipient("Jane", "jane@example.org", [])], project(), templates)
    assert message["Subject"] == "Your NSBS files, push of 12 June 2025"
    assert "nsbs_matched_detections_2022.zip" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_broken_override_names_the_template(tmp_path: Path) -> None:
    (tmp_path / "body.txt").write_text("Hello {{ no_such_field }}")
    with pytest.raises(TemplateProblem, match=r"body\.txt.*no_such_field"):
        render_and_build([Recipient("Jane", "jane@example.org", [])], project(), EmailTemplates(tmp_path))
    with pytest.raises(TemplateProblem, match="not a folder"):
        EmailTemplates(tmp_path / "missing")


def test_clean_header_removes_every_line_break() -> None:
    assert clean_header("a\r\nb\nc\rd\x00e\u2028f\tg") == "a b c d e f g"


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("jane.doe@dal.ca", True),
        ("j+tag@sub.example.org", True),
        ("not an address", False),
        ("jane@localhost", False),
        ("jane@@dal.ca", False),
        ("jane@dal.ca\r\nBcc: x@y.org", False),
        ("<jane@dal.ca>", False),
        ("jane@dal..ca", False),
        ("a,b@dal.ca", False),
    ],
)
def test_address_validation(address: str, ok: bool) -> None:
    assert valid_address(address) is ok


def test_choose_recipients_merges_duplicates_and_ignores_other_roles() -> None:
    recipients, warnings = choose_recipients(
        [
            Contact("Jane", "jane@dal.ca", ROLE_PI),
            Contact("Jane", "jane@dal.ca", ROLE_POC),  # one person in two roles: no warning
            Contact("Jane D", "JANE@dal.ca", ROLE_POC),  # another contact on the same address
            Contact("Tech", "tech@dal.ca", "technician"),
            Contact("Bad", "bad@", ROLE_POC),
        ]
    )
    assert [(r.email, r.roles) for r in recipients] == [
        ("jane@dal.ca", ["principal investigator", "point of contact"])
    ]
    assert warnings == [
        "point of contact 'Jane D' repeats the address 'JANE@dal.ca' of 'Jane': one email to it",
        "point of contact 'Bad' has an invalid email address 'bad@': skipped",
    ]


def sample_message(to: str = "jane@dal.ca") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "otndc@dal.ca"
    message["To"] = to
    message["Subject"] = "test"
    message.set_content("hello")
    return message


async def test_simulated_mailer_writes_numbered_eml_files(tmp_path: Path) -> None:
    mailer = SimulatedMailer(tmp_path / "outbox")
    first = await mailer.send(sample_message(), recipients=["jane@dal.ca"], push_date=PUSH, project="NSBS")
    second = await mailer.send(sample_message(), recipients=["jane@dal.ca"], push_date=PUSH, project="NSBS")
    assert first.status == "simulated"
    folder = tmp_path / "outbox" / "2025-06-12"
    assert [Path(first.outbox_file or ""), Path(second.outbox_file or "")] == [
        folder / "NSBS-1.eml",
        folder / "NSBS-2.eml",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["NSBS-1.eml", "NSBS-2.eml"]
    parsed = message_from_bytes((folder / "NSBS-1.eml").read_bytes(), policy=default)
    assert parsed["To"] == "jane@dal.ca"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_smtp_down_is_retried_with_backoff_then_raises_without_the_password() -> None:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_user="svc",
        smtp_password="s3cret-pw",  # type: ignore[arg-type]
        smtp_timeout=2,
        send_mail=True,
        _env_file=None,  # type: ignore[call-arg]
    )
    mailer = SmtpMailer(settings, Backoff(attempts=3, base_delay=0.5, sleep=sleep))
    with pytest.raises(MailUnavailable, match="gave up after 3 attempts") as caught:
        await mailer.send(sample_message(), recipients=["jane@dal.ca"], push_date=PUSH, project="NSBS")
    assert delays == [0.5, 1.0]
    assert "s3cret-pw" not in str(caught.value)
