"""Extractor handler: one `extract.requested` -> the files in staging -> `extract.created` or `.failed`.

Plain async function; the engine is a port (`build_extract`), so tests use a fake. The job folder is
`<staging>/<push date>/<CODE>_<year>_<type>/`. After a build, `manifest.json` records the created event
(written atomically, after the files): a redelivered request whose files are all there, with the sizes
the manifest recorded, re-announces them instead of rebuilding. Leftover `.part` files of a build that
was killed are removed before building again.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from services.extractor.engine import ExtractInputError, ExtractResult
from shared.extract_list import CODE_RE, TYPES
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    ExtractCreated,
    ExtractFailed,
    ExtractRequested,
    FileInfo,
)
from shared.nodes import NodeUnavailable

log = logging.getLogger("otn_push.extractor")
MANIFEST = "manifest.json"


class BuildExtract(Protocol):
    async def __call__(
        self,
        nodes: dict[str, str],
        code: str,
        year: int,
        type_code: str,
        out_dir: Path,
        fmt: str = "2025",
        progress: Callable[[int], None] | None = None,
    ) -> ExtractResult: ...


@dataclass
class ExtractorPorts:
    build_extract: BuildExtract
    nodes: dict[str, str]
    staging_dir: Path
    retry_attempts: int = 4
    retry_base_delay: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class Outcome:
    routing_key: str
    message: BaseModel
    message_id: str
    reused: bool = False


def job_dir(staging_dir: Path, msg: ExtractRequested) -> Path:
    """The job's staging folder; refuses anything that could leave the staging area."""
    key = msg.extract
    if not CODE_RE.fullmatch(key.code) or key.type not in TYPES:
        raise ExtractInputError(f"extract {key.label!r} is not a safe CODE,YEAR,TYPE")
    root = staging_dir.resolve()
    folder = (root / msg.push_date.isoformat() / f"{key.code}_{key.year}_{key.type}").resolve()
    if root not in folder.parents:
        raise ExtractInputError(f"extract {key.label!r} would be staged outside {root}")
    return folder


def created_id(msg: ExtractRequested, zip_sha: str) -> str:
    key = msg.extract
    return f"{EXTRACT_CREATED}:{msg.push_date}:{key.code}:{key.year}:{key.type}:{zip_sha[:12]}"


def failed_id(msg: ExtractRequested, reason: str) -> str:
    key, digest = msg.extract, hashlib.sha256(reason.encode()).hexdigest()[:12]
    return f"{EXTRACT_FAILED}:{msg.push_date}:{key.code}:{key.year}:{key.type}:{digest}"


def failed(msg: ExtractRequested, reason: str) -> Outcome:
    event = ExtractFailed(
        push_date=msg.push_date, job_id=msg.job_id, extract=msg.extract, stage="extract", reason=reason
    )
    return Outcome(EXTRACT_FAILED, event, failed_id(msg, reason))


def read_manifest(folder: Path, msg: ExtractRequested) -> ExtractCreated | None:
    """The recorded event when every file it names is present with its recorded size, else None."""
    try:
        doc: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        event = ExtractCreated.model_validate(doc["created"])
    except (OSError, ValueError, KeyError):
        return None
    if event.format != msg.format or event.extract != msg.extract or not event.files:
        return None
    for file in event.files:
        path = Path(file.path)
        if path.parent != folder or not path.is_file() or path.stat().st_size != file.size:
            return None
    return event.model_copy(update={"job_id": msg.job_id, "push_date": msg.push_date})


def write_manifest(folder: Path, event: ExtractCreated) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".part", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"created": event.model_dump(mode="json")}, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / MANIFEST)


def clear_leftovers(folder: Path) -> None:
    """Remove what an interrupted build left (temp `.part` files and a stale manifest)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and (path.name.endswith(".part") or path.name == MANIFEST):
            path.unlink(missing_ok=True)


@asynccontextmanager
async def job_lock(folder: Path, poll: float = 0.5) -> AsyncIterator[None]:
    """One build per job folder at a time (a duplicate request waits, then finds the manifest).

    An flock: released by the OS if the process dies, so a killed worker never leaves it held.
    """
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll)
        yield
    finally:
        os.close(fd)


def _event(msg: ExtractRequested, result: ExtractResult) -> ExtractCreated:
    return ExtractCreated(
        push_date=msg.push_date,
        job_id=msg.job_id,
        extract=msg.extract,
        format=msg.format,
        node=result.node,
        files=[FileInfo(name=f.name, path=str(f.path), size=f.size, sha256=f.sha256) for f in result.files],
        rows=result.rows,
        summary=dict(result.summary),
        warnings=list(result.warnings),
    )


async def handle_extract_requested(msg: ExtractRequested, ports: ExtractorPorts) -> Outcome:
    """Build (or find already built) the job's files; the outcome is the event to publish."""
    try:
        folder = job_dir(ports.staging_dir, msg)
    except ExtractInputError as exc:
        return failed(msg, str(exc))
    folder.mkdir(parents=True, exist_ok=True)
    async with job_lock(folder):
        return await _build_locked(msg, folder, ports)


async def _build_locked(msg: ExtractRequested, folder: Path, ports: ExtractorPorts) -> Outcome:
    label = msg.extract.label
    existing = read_manifest(folder, msg)
    if existing is not None:
        log.info("%s: files already in staging, announcing them again", label)
        return Outcome(EXTRACT_CREATED, existing, created_id(msg, existing.files[0].sha256), reused=True)
    clear_leftovers(folder)

    def progress(rows: int) -> None:
        log.info("%s: %d rows written", label, rows)

    attempt = 0
    while True:
        attempt += 1
        try:
            result = await ports.build_extract(
                ports.nodes,
                msg.extract.code,
                msg.extract.year,
                msg.extract.type,
                folder,
                fmt=msg.format,
                progress=progress,
            )
            break
        except ExtractInputError as exc:
            log.warning("%s cannot be built: %s", label, exc)
            return failed(msg, str(exc))
        except NodeUnavailable as exc:
            if attempt >= ports.retry_attempts:
                reason = f"{exc} (gave up after {attempt} attempts)"
                log.error("%s: %s", label, reason)
                return failed(msg, reason)
            delay = ports.retry_base_delay * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1fs", label, exc, attempt, ports.retry_attempts - 1, delay)
            await ports.sleep(delay)
    event = _event(msg, result)
    write_manifest(folder, event)
    log.info("%s built: %d rows, %s", label, result.rows, ", ".join(f.name for f in result.files))
    return Outcome(EXTRACT_CREATED, event, created_id(msg, event.files[0].sha256 if event.files else "none"))
