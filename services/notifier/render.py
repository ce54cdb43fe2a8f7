"""The project email: Jinja2 templates (text + autoescaped HTML) and a safely built MIME message.

Built-in templates are in `templates/` (`subject.txt`, `body.txt`, `body.html`); a file of the same name
in `OTN_PUSH_TEMPLATES_DIR` replaces the built-in one. Whatever names and project fields contain, they
can neither add headers (CR/LF and other control characters are removed from header values, addresses
go through `email.headerregistry.Address`) nor markup (HTML is autoescaped).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError

from services.notifier.contacts import ProjectInfo, Recipient
from services.notifier.ledger import UploadRecord

BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAMES = ("subject.txt", "body.txt", "body.html")

TYPE_WORDS = {
    "t": "matched detections of your tagged animals",
    "q": "qualified detections: other projects' animals on your receivers",
    "u": "unqualified detections: unidentified tags on your receivers",
    "s": "sentinel tag detections on your receivers",
}
TYPE_ORDER = {"t": 0, "q": 1, "u": 2, "s": 3}

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


class TemplateProblem(ValueError):
    """An email template is missing or cannot be rendered; the message names the template."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def clean_header(value: str) -> str:
    """One line of text: control characters (CR, LF, TAB, …) become single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _format_of(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".zip"):
        return "CSV in zip"
    if lower.endswith(".parquet"):
        return "Parquet"
    if lower.endswith(".csv"):
        return "CSV"
    return "file"


def _join_names(names: Sequence[str]) -> str:
    names = [n for n in names if n]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def email_context(
    *,
    push_date: dt.date,
    project: ProjectInfo,
    recipients: Sequence[Recipient],
    uploads: Sequence[UploadRecord],
    sender: str,
) -> dict[str, Any]:
    """Everything the templates may use (documented in the README's template section)."""
    pis = [r.name for r in recipients if "principal investigator" in r.roles]
    pocs = [r.name for r in recipients if "principal investigator" not in r.roles]
    greeting = _join_names(pis) or _join_names(pocs) or f"{project.code} team"
    extracts: list[dict[str, Any]] = []
    for upload in sorted(uploads, key=lambda u: (u.year, TYPE_ORDER.get(u.type, 9), u.job_id)):
        files = [
            {
                "name": f.get("name", ""),
                "path": f.get("path", ""),
                "url": f.get("url"),
                "size": int(f.get("size") or 0),
                "size_text": _size_text(int(f.get("size") or 0)),
                "format": _format_of(str(f.get("name", ""))),
                "sha256": f.get("sha256", ""),
            }
            for f in upload.files
        ]
        extracts.append(
            {
                "year": upload.year,
                "type": upload.type,
                "type_words": TYPE_WORDS.get(upload.type, upload.type),
                "rows": upload.rows,
                "files": files,
            }
        )
    return {
        "push_date": push_date.isoformat(),
        "push_date_long": f"{push_date.day} {push_date:%B %Y}",
        "project": project,
        "node": project.node,
        "pis": pis,
        "pocs": pocs,
        "recipients": list(recipients),
        "greeting": greeting,
        "extracts": extracts,
        "files": [f for e in extracts for f in e["files"]],
        "total_rows": sum(e["rows"] for e in extracts),
        "sender": sender,
    }


class EmailTemplates:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(BUILTIN_TEMPLATES))]
        if override_dir is not None:
            if not Path(override_dir).is_dir():
                raise TemplateProblem(f"OTN_PUSH_TEMPLATES_DIR {override_dir} is not a folder")
            loaders.insert(0, FileSystemLoader(str(override_dir)))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=lambda name: bool(name and name.endswith((".html", ".htm"))),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except TemplateError as exc:
            raise TemplateProblem(f"email template {name}: {exc}") from None

    def render(self, context: dict[str, Any], prefix: str = "") -> RenderedEmail:
        """`prefix` picks another set of templates, e.g. `ops_` for the ops email (`ops_subject.txt`, …)."""
        subject = clean_header(self._render(f"{prefix}subject.txt", context))
        if not subject:
            raise TemplateProblem(f"email template {prefix}subject.txt renders an empty subject")
        return RenderedEmail(
            subject=subject,
            text=self._render(f"{prefix}body.txt", context),
            html=self._render(f"{prefix}body.html", {**context, "subject": subject}),
        )


def address(email: str, name: str = "") -> Address:
    return Address(display_name=clean_header(name), addr_spec=email.strip())


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    to: Sequence[Recipient],
    cc: Sequence[str],
    message_id: str,
    push_date: dt.date,
    project: str,
    now: dt.datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative message; `to` and `cc` must hold validated addresses."""
    message = EmailMessage(policy=SMTP)
    message["Subject"] = clean_header(rendered.subject)
    message["From"] = address(sender)
    message["To"] = tuple(address(r.email, r.name) for r in to)
    to_keys = {r.email.lower() for r in to}
    cc_list = [address(c) for c in cc if c.lower() not in to_keys]
    if cc_list:
        message["Cc"] = tuple(cc_list)
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    message["Message-ID"] = clean_header(message_id)
    message["X-OTN-Push"] = clean_header(f"{push_date.isoformat()} {project}")
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
