"""The notifier's state: uploads waiting for their project, and the email ledger.

Every read and write for one (push, project) happens in a `ProjectTx`, a transaction that holds a
PostgreSQL advisory lock on that pair: two notifier instances never interleave for the same project,
so they can never both send its email. The ledger (`otn_push.emails`) has one row per (push, project,
recipient) with status `sending` (claimed, not yet confirmed), `sent`, `simulated`, `refused` (the
server refused that address) or `skipped` (recipient "" : the project had no usable address).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import EmailSent, Job, Upload
from shared.messages import ExtractUploaded
from shared.outbox import add_to_outbox_once

PRODUCER = "notifier"
SENDING = "sending"
FINAL_STATUSES = frozenset({"sent", "simulated", "refused", "skipped"})


@dataclass(frozen=True)
class UploadRecord:
    job_id: int
    year: int
    type: str
    rows: int
    files: list[dict[str, Any]]


@dataclass
class ProjectState:
    job_ids: list[int] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "CODE,YEAR,TYPE" of jobs not uploaded yet
    uploads: list[UploadRecord] = field(default_factory=list)
    ledger: dict[str, tuple[str, str]] = field(default_factory=dict)  # recipient -> (status, message id)
    attempts: dict[int, int] = field(default_factory=dict)  # job id -> the scheduler's attempt number

    @property
    def emailed(self) -> bool:
        """The project's email went out (or was settled without one): never send it again."""
        return any(status in FINAL_STATUSES for status, _ in self.ledger.values())

    @property
    def pending(self) -> list[str]:
        return [r for r, (status, _) in self.ledger.items() if status == SENDING]

    @property
    def pending_message_id(self) -> str | None:
        ids = sorted({mid for status, mid in self.ledger.values() if status == SENDING})
        return ids[0] if ids else None


class ProjectTx(Protocol):
    async def record_upload(self, msg: ExtractUploaded) -> bool:
        """Record (or refresh) the job's upload; True when it was not recorded before."""
        ...

    async def state(self) -> ProjectState: ...

    async def claim(self, recipients: Sequence[str], message_id: str) -> None:
        """Add `sending` rows for recipients that have no ledger row yet."""
        ...

    async def mark(self, statuses: Mapping[str, str], message_id: str, outbox_file: str | None) -> None:
        """Set (or create) the ledger rows of these recipients to their final status."""
        ...

    async def emit(self, routing_key: str, event: BaseModel, message_id: str) -> bool:
        """Stage an event in the outbox in this transaction, once per message id."""
        ...


class NotifierRepository(Protocol):
    def locked(self, push_date: dt.date, project: str) -> AbstractAsyncContextManager[ProjectTx]:
        """A transaction holding the (push, project) lock; committed on normal exit, else rolled back."""
        ...


class SqlProjectTx:
    def __init__(self, session: AsyncSession, push_date: dt.date, project: str) -> None:
        self.session = session
        self.push_date = push_date
        self.project = project

    async def lock(self) -> None:
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('otn_push.notify'), hashtext(:key))"),
            {"key": f"{self.push_date.isoformat()}/{self.project}"},
        )

    async def record_upload(self, msg: ExtractUploaded) -> bool:
        values = {
            "job_id": msg.job_id,
            "push_date": msg.push_date,
            "project": msg.extract.code,
            "node": msg.node,
            "year": msg.extract.year,
            "type": msg.extract.type,
            "rows": msg.rows,
            "files": [f.model_dump(mode="json") for f in msg.files],
        }
        stmt = insert(Upload).values(**values)
        upsert = stmt.on_conflict_do_update(
            index_elements=[Upload.job_id],
            set_={"rows": stmt.excluded.rows, "files": stmt.excluded.files, "node": stmt.excluded.node},
        ).returning(text("(xmax = 0) AS inserted"))
        return bool((await self.session.execute(upsert)).scalar_one())

    async def state(self) -> ProjectState:
        jobs = (
            await self.session.execute(
                select(Job.id, Job.code, Job.year, Job.type, Job.attempts)
                .where(Job.push_date == self.push_date, Job.code == self.project)
                .order_by(Job.id)
            )
        ).all()
        uploads = (
            (
                await self.session.execute(
                    select(Upload)
                    .where(Upload.push_date == self.push_date, Upload.project == self.project)
                    .order_by(Upload.job_id)
                )
            )
            .scalars()
            .all()
        )
        ledger = (
            await self.session.execute(
                select(EmailSent.recipient, EmailSent.status, EmailSent.message_id).where(
                    EmailSent.push_date == self.push_date, EmailSent.project == self.project
                )
            )
        ).all()
        uploaded = {u.job_id for u in uploads}
        return ProjectState(
            job_ids=sorted({j.id for j in jobs} | uploaded),
            missing=[f"{j.code},{j.year},{j.type}" for j in jobs if j.id not in uploaded],
            uploads=[UploadRecord(u.job_id, u.year, u.type, u.rows, list(u.files)) for u in uploads],
            ledger={r.recipient: (r.status, r.message_id) for r in ledger},
            attempts={j.id: j.attempts for j in jobs},
        )

    async def claim(self, recipients: Sequence[str], message_id: str) -> None:
        if not recipients:
            return
        rows = [
            {
                "push_date": self.push_date,
                "project": self.project,
                "recipient": r,
                "message_id": message_id,
                "status": SENDING,
            }
            for r in recipients
        ]
        await self.session.execute(
            insert(EmailSent).values(rows).on_conflict_do_nothing(constraint="emails_business_key")
        )

    async def mark(self, statuses: Mapping[str, str], message_id: str, outbox_file: str | None) -> None:
        for recipient, status in statuses.items():
            stmt = insert(EmailSent).values(
                push_date=self.push_date,
                project=self.project,
                recipient=recipient,
                message_id=message_id,
                status=status,
                outbox_file=outbox_file,
                sent_at=func.now(),
            )
            await self.session.execute(
                stmt.on_conflict_do_update(
                    constraint="emails_business_key",
                    set_={"status": status, "outbox_file": outbox_file, "sent_at": func.now()},
                )
            )

    async def emit(self, routing_key: str, event: BaseModel, message_id: str) -> bool:
        return await add_to_outbox_once(self.session, PRODUCER, routing_key, event, message_id)


class SqlNotifierRepository:
    def __init__(self, sessionmaker: async_sessionmaker[Any]) -> None:
        self.sessionmaker = sessionmaker

    @asynccontextmanager
    async def locked(self, push_date: dt.date, project: str) -> AsyncIterator[ProjectTx]:
        async with self.sessionmaker() as session, session.begin():
            tx = SqlProjectTx(session, push_date, project)
            await tx.lock()
            yield tx

    async def sending_rows(self) -> int:
        """How many ledger rows are claimed but not confirmed (for status and tests)."""
        async with self.sessionmaker() as session:
            count = await session.scalar(
                select(func.count()).select_from(EmailSent).where(EmailSent.status == SENDING)
            )
            return int(count or 0)
