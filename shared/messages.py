"""Message contracts between the services: the only thing they share at run time.

Every message names its business key (push date + extract code/year/type, or push date + project) so that
handlers can be idempotent. Routing keys are on the topic exchange `Settings.exchange` (default otn.push).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

ExtractType = Literal["t", "q", "u", "s"]
ExtractFormat = Literal["2025", "legacy"]

# routing keys
PUSH_START = "push.start"  # command: CLI or calendar -> scheduler
PUSH_READY = "push.ready"
PUSH_COMPLETED = "push.completed"
EXTRACT_REQUESTED = "extract.requested"
EXTRACT_CREATED = "extract.created"
EXTRACT_UPLOADED = "extract.uploaded"
EXTRACT_FAILED = "extract.failed"
PROJECT_NOTIFIED = "project.notified"
PROJECT_NOTIFY_FAILED = "project.notify_failed"


class ExtractKey(BaseModel):
    code: str = Field(description="project code without node prefix, upper case, e.g. NSBS")
    year: int
    type: ExtractType

    @property
    def label(self) -> str:
        return f"{self.code},{self.year},{self.type}"


class PushStart(BaseModel):
    push_date: dt.date
    extracts: list[ExtractKey] | None = Field(default=None, description="manual list; None = select by date")
    format: ExtractFormat = "2025"
    requested_by: str = "cli"


class PushReady(BaseModel):
    push_date: dt.date
    run_id: int
    jobs: list[ExtractKey]


class ExtractRequested(BaseModel):
    push_date: dt.date
    job_id: int
    extract: ExtractKey
    format: ExtractFormat = "2025"


class FileInfo(BaseModel):
    name: str = Field(description="file name, e.g. nsbs_matched_detections_2022.zip")
    path: str = Field(description="absolute path in staging (created) or location in the store (uploaded)")
    size: int
    sha256: str
    url: str | None = Field(default=None, description="where a researcher finds it (uploaded only)")


class ExtractCreated(BaseModel):
    push_date: dt.date
    job_id: int
    extract: ExtractKey
    format: ExtractFormat = "2025"
    node: str = Field(description="node of the extract's project (its prefix)")
    files: list[FileInfo]
    rows: int
    summary: dict[str, int] = Field(
        default_factory=dict, description="rows per contributing project (receiver or tag project)"
    )
    warnings: list[str] = Field(default_factory=list)


class ExtractUploaded(BaseModel):
    push_date: dt.date
    job_id: int
    extract: ExtractKey
    node: str
    files: list[FileInfo]
    rows: int


class ExtractFailed(BaseModel):
    push_date: dt.date
    job_id: int
    extract: ExtractKey
    stage: Literal["select", "extract", "upload", "notify"]
    reason: str


class ProjectNotified(BaseModel):
    push_date: dt.date
    project: str
    job_ids: list[int]
    recipients: list[str]
    warnings: list[str] = Field(default_factory=list)


class ProjectNotifyFailed(BaseModel):
    """The project's email cannot be sent until something is fixed (settings, templates, contacts' node)."""

    push_date: dt.date
    project: str
    job_ids: list[int]
    reason: str


class PushCompleted(BaseModel):
    push_date: dt.date
    run_id: int
    completed: int
    failed: int
