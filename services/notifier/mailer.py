"""Mailers: send a built message over SMTP (aiosmtplib), or simulate by writing it to the outbox folder.

A mailer either returns what happened to every envelope recipient, or raises:
`MailUnavailable` (transient: server down, timeouts, 4xx, after retrying with backoff) so the message is
handed back and tried again later, or `MailRejected` (permanent: 5xx for the whole message, bad
credentials, STARTTLS missing) so it goes to the dead-letter queue with its reason. Nothing raised means
nothing may be marked as sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Protocol

import aiosmtplib

from shared.redact import redact_text
from shared.settings import Settings

log = logging.getLogger("otn_push.notifier")


class MailUnavailable(ConnectionError):
    """The mail server could not take the message now; try again later."""


class MailRejected(RuntimeError):
    """The mail server refused the message for good (or the SMTP settings are wrong)."""


@dataclass(frozen=True)
class SendResult:
    status: str  # sent | simulated
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> server's reason
    outbox_file: str | None = None


class Mailer(Protocol):
    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], push_date: dt.date, project: str
    ) -> SendResult:
        """Deliver `message` to the envelope `recipients` (To and Cc)."""
        ...


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4
    base_delay: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


class SmtpMailer:
    def __init__(self, settings: Settings, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.backoff = backoff or Backoff(settings.retry_attempts, settings.retry_base_delay)

    def _safe(self, text: str) -> str:
        return redact_text(text, self.settings.secrets())

    async def _send_once(self, message: EmailMessage, recipients: Sequence[str]) -> dict[str, str]:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        try:
            errors, _ = await aiosmtplib.send(
                message,
                sender=s.smtp_from,
                recipients=list(recipients),
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user or None,
                password=password if s.smtp_user else None,
                start_tls=s.smtp_starttls,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(code >= 500 for code in codes):
                return {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
            raise MailUnavailable(f"recipients deferred ({self._safe(detail)})") from None
        except aiosmtplib.SMTPResponseException as exc:
            what = f"SMTP server {s.smtp_host}:{s.smtp_port} answered {exc.code} {self._safe(exc.message)}"
            if 400 <= exc.code < 500:
                raise MailUnavailable(what) from None
            raise MailRejected(what) from None
        except (OSError, TimeoutError) as exc:  # incl. aiosmtplib's connect/timeout/disconnect errors
            raise MailUnavailable(
                f"SMTP server {s.smtp_host}:{s.smtp_port} unreachable ({type(exc).__name__}: "
                f"{self._safe(str(exc))})"
            ) from None
        except aiosmtplib.SMTPException as exc:  # STARTTLS or AUTH not offered: the settings are wrong
            raise MailRejected(f"SMTP server {s.smtp_host}:{s.smtp_port}: {self._safe(str(exc))}") from None
        return {addr: f"{resp.code} {resp.message}" for addr, resp in errors.items()}

    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], push_date: dt.date, project: str
    ) -> SendResult:
        attempts = max(1, self.backoff.attempts)
        for attempt in range(1, attempts + 1):
            try:
                refused = await self._send_once(message, recipients)
            except MailUnavailable as exc:
                if attempt == attempts:
                    raise MailUnavailable(f"{exc} (gave up after {attempts} attempts)") from None
                delay = self.backoff.base_delay * 2 ** (attempt - 1)
                log.warning(
                    "email for %s not sent (attempt %d of %d), retrying in %.1fs: %s",
                    project,
                    attempt,
                    attempts,
                    delay,
                    exc,
                )
                await self.backoff.sleep(delay)
                continue
            log.info(
                "sent email for %s (push %s) to %d recipient(s)%s",
                project,
                push_date,
                len(recipients) - len(refused),
                f", {len(refused)} refused" if refused else "",
            )
            return SendResult(status="sent", refused=refused)
        raise AssertionError("unreachable")


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class SimulatedMailer:
    """`OTN_PUSH_SEND_MAIL=false`: each message becomes `<outbox_dir>/<push_date>/<project>-<n>.eml`."""

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], push_date: dt.date, project: str
    ) -> SendResult:
        path = await asyncio.to_thread(self._write, message.as_bytes(policy=SMTP), push_date, project)
        log.info(
            "simulated email for %s (push %s) to %s: %s", project, push_date, ", ".join(recipients), path
        )
        return SendResult(status="simulated", outbox_file=str(path))

    def _write(self, data: bytes, push_date: dt.date, project: str) -> Path:
        folder = self.outbox_dir / push_date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        stem = _UNSAFE_FILE_CHARS.sub("_", project).strip("._") or "project"
        temp = folder / f".{stem}.{uuid.uuid4().hex[:12]}.part"
        with temp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            n = 1
            while True:
                final = folder / f"{stem}-{n}.eml"
                try:
                    os.link(temp, final)  # atomic: never overwrites an earlier message
                    return final
                except FileExistsError:
                    n += 1
        finally:
            temp.unlink(missing_ok=True)


def make_mailer(settings: Settings) -> Mailer:
    if settings.send_mail:
        return SmtpMailer(settings)
    return SimulatedMailer(settings.outbox_dir)
