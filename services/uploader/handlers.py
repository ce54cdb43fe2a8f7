"""Uploader handler: put an extract's files into the document store, then say where they are.

Plain async functions (no broker here): `app.py` feeds them messages and publishes what they return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.uploader.store import DocumentStore, StoredFile, StoreError
from shared.messages import ExtractCreated, ExtractFailed, ExtractUploaded, FileInfo

log = logging.getLogger("otn_push.uploader")


@dataclass(frozen=True)
class Retry:
    """Exponential backoff for transient store errors: `attempts` tries in all."""

    attempts: int = 4
    base_delay: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def delay(self, failures: int) -> float:
        return self.base_delay * 2 ** (failures - 1)


class UploadFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def put_with_retry(
    store: DocumentStore, msg: ExtractCreated, file: FileInfo, retry: Retry
) -> StoredFile:
    attempts = max(1, retry.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return await store.put(
                Path(file.path), node=msg.node, code=msg.extract.code, name=file.name, sha256=file.sha256
            )
        except StoreError as exc:
            if not exc.transient:
                raise UploadFailed(f"{file.name}: {exc}") from None
            if attempt == attempts:
                raise UploadFailed(f"{file.name}: {exc} (gave up after {attempts} attempts)") from None
            wait = retry.delay(attempt)
            log.warning(
                "upload of %s failed (attempt %d of %d), retrying in %.1fs: %s",
                file.name,
                attempt,
                attempts,
                wait,
                exc,
            )
            await retry.sleep(wait)
    raise AssertionError("unreachable")


def outside_of(folder: Path, paths: list[str]) -> list[str]:
    root = folder.resolve()
    return [p for p in paths if not Path(p).resolve().is_relative_to(root)]


async def handle_extract_created(
    msg: ExtractCreated, store: DocumentStore, retry: Retry | None = None, staging_dir: Path | None = None
) -> ExtractUploaded | ExtractFailed:
    """Put every file of the extract into the store; the store skips files it already holds.

    With `staging_dir`, only files inside it are taken: an event naming any other file (a forged or
    corrupted message) must not publish it to researchers.
    """
    retry = retry or Retry()
    label = msg.extract.label

    def failed(reason: str) -> ExtractFailed:
        log.error("upload of %s failed: %s", label, reason)
        return ExtractFailed(
            push_date=msg.push_date, job_id=msg.job_id, extract=msg.extract, stage="upload", reason=reason
        )

    if not msg.files:
        return failed("the created event lists no files")
    names = [f.name for f in msg.files]
    if len(set(names)) != len(names):
        return failed(f"the created event lists a file name twice: {', '.join(names)}")
    if staging_dir is not None:
        outside = outside_of(staging_dir, [f.path for f in msg.files])
        if outside:
            return failed(f"file(s) outside the staging folder {staging_dir}: {', '.join(outside)}")
    uploaded: list[FileInfo] = []
    for file in msg.files:
        try:
            stored = await put_with_retry(store, msg, file, retry)
        except UploadFailed as exc:
            return failed(exc.reason)
        log.info("%s %s -> %s", "stored" if stored.copied else "already stored", file.name, stored.location)
        uploaded.append(file.model_copy(update={"path": stored.location, "url": stored.url}))
    return ExtractUploaded(
        push_date=msg.push_date,
        job_id=msg.job_id,
        extract=msg.extract,
        node=msg.node,
        files=uploaded,
        rows=msg.rows,
    )
