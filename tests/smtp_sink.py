"""A real SMTP server for tests (aiosmtpd in its own thread) that keeps every message it receives."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """aiosmtpd handler: keeps (envelope recipients, parsed message) pairs; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"

    def snapshot(self) -> list[tuple[list[str], EmailMessage]]:
        with self.lock:
            return list(self.messages)

    def for_push(self, push_date: object, project: str) -> list[tuple[list[str], EmailMessage]]:
        """Messages of one project in one push (the notifier's `X-OTN-Push: <date> <project>` header)."""
        return [(r, m) for r, m in self.snapshot() if m["X-OTN-Push"] == f"{push_date} {project}"]


def free_port() -> int:
    """aiosmtpd's Controller(port=0) does not work: pick a free port first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
