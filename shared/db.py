"""otn-push's own bookkeeping tables (schema `otn_push`), migrated with Alembic (`otn-push db upgrade`).

They live in OTN_PUSH_DATABASE_URL, by default the home node's database. The node's own tables are in
`shared.nodeschema` and are never migrated by otn-push.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.nodes import sqlalchemy_url

OWN_SCHEMA = "otn_push"

# job states, in pipeline order
LISTED = "listed"
EXTRACTING = "extracting"
UPLOADING = "uploading"
NOTIFYING = "notifying"
COMPLETED = "completed"
FAILED = "failed"
JOB_STATES = (LISTED, EXTRACTING, UPLOADING, NOTIFYING, COMPLETED, FAILED)

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(schema=OWN_SCHEMA)


def _now() -> Any:
    return func.now()


class PushRun(Base):
    __tablename__ = "push_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    push_date: Mapped[dt.date] = mapped_column(Date, unique=True)
    format: Mapped[str] = mapped_column(String(8), default="2025")
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | completed | failed
    requested_by: Mapped[str] = mapped_column(Text, default="cli")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    restarted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    warnings: Mapped[list[str]] = mapped_column(Json, default=list)


class Job(Base):
    """One extract of one push, keyed by its business id (push date, code, year, type)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("push_date", "code", "year", "type", name="jobs_business_key"),
        Index("jobs_push_state_idx", "push_date", "state"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("push_runs.id", ondelete="CASCADE"))
    push_date: Mapped[dt.date] = mapped_column(Date)
    code: Mapped[str] = mapped_column(Text)
    year: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(1))
    node: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=LISTED)
    reason: Mapped[str | None] = mapped_column(Text)
    list_row_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    files: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    summary: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    warnings: Mapped[list[str]] = mapped_column(Json, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), onupdate=_now()
    )
    extracted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxMessage(Base):
    """Transactional outbox: an event is written with the state change and published by a relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("outbox_pending_idx", "id", postgresql_where="published_at IS NULL"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    producer: Mapped[str] = mapped_column(Text)
    routing_key: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text, unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Upload(Base):
    """The notifier's record of an uploaded extract, waiting for the rest of its project's extracts."""

    __tablename__ = "uploads"
    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    push_date: Mapped[dt.date] = mapped_column(Date, index=True)
    project: Mapped[str] = mapped_column(Text)
    node: Mapped[str] = mapped_column(Text)
    year: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(1))
    rows: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    uploaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class EmailSent(Base):
    """Email ledger: one row per (push, project, recipient); a row means that email must not go again."""

    __tablename__ = "emails"
    __table_args__ = (UniqueConstraint("push_date", "project", "recipient", name="emails_business_key"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    push_date: Mapped[dt.date] = mapped_column(Date)
    project: Mapped[str] = mapped_column(Text)
    recipient: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | simulated
    outbox_file: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
