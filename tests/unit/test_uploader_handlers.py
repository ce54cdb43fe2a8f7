"""Uploader handler with fake stores: events out, retries, permanent and transient failures."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from services.uploader.handlers import Retry, handle_extract_created
from services.uploader.store import FolderStore, SourceError, StoredFile, StoreUnavailable
from shared.messages import ExtractCreated, ExtractFailed, ExtractKey, ExtractUploaded, FileInfo


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class FlakyStore:
    """Fails `failures` times with the given error, then stores in memory."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or StoreUnavailable("store /x: cannot write f: Permission denied")
        self.calls: list[tuple[str, str, str]] = []
        self.held: dict[str, str] = {}

    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        self.calls.append((node, code, name))
        if self.failures:
            self.failures -= 1
            raise self.error
        location = f"data/repository/{code.lower()}/detection-extracts/{name}"
        self.held[location] = sha256
        return StoredFile(location, f"https://store.example/{location}")


def created(tmp_path: Path, names: tuple[str, ...] = ("nsbs_matched_detections_2022.zip",)) -> ExtractCreated:
    files = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(name.encode())
        files.append(
            FileInfo(
                name=name, path=str(path), size=len(name), sha256=hashlib.sha256(name.encode()).hexdigest()
            )
        )
    return ExtractCreated(
        push_date=dt.date(2025, 6, 12),
        job_id=7,
        extract=ExtractKey(code="NSBS", year=2022, type="t"),
        node="OTN",
        files=files,
        rows=42,
    )


async def test_every_file_is_stored_and_reported_with_its_location(tmp_path: Path) -> None:
    msg = created(tmp_path, ("nsbs_matched_detections_2022.zip", "nsbs_matched_detections_2022.parquet"))
    store = FlakyStore()
    out = await handle_extract_created(msg, store, Retry(sleep=RecordingSleep()))
    assert isinstance(out, ExtractUploaded)
    assert (out.job_id, out.extract, out.node, out.rows) == (7, msg.extract, "OTN", 42)
    assert [f.path for f in out.files] == [
        "data/repository/nsbs/detection-extracts/nsbs_matched_detections_2022.zip",
        "data/repository/nsbs/detection-extracts/nsbs_matched_detections_2022.parquet",
    ]
    assert [f.url for f in out.files] == [f"https://store.example/{f.path}" for f in out.files]
    assert [(f.sha256, f.size) for f in out.files] == [(f.sha256, f.size) for f in msg.files]
    assert store.calls == [("OTN", "NSBS", f.name) for f in msg.files]


async def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    store = FlakyStore(failures=2)
    out = await handle_extract_created(
        created(tmp_path), store, Retry(attempts=4, base_delay=0.5, sleep=sleep)
    )
    assert isinstance(out, ExtractUploaded)
    assert sleep.delays == [0.5, 1.0]
    assert len(store.calls) == 3


async def test_store_down_too_long_fails_the_upload_with_a_reason(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    out = await handle_extract_created(
        created(tmp_path), FlakyStore(failures=99), Retry(attempts=3, base_delay=1, sleep=sleep)
    )
    assert isinstance(out, ExtractFailed)
    assert out.stage == "upload" and out.job_id == 7
    assert "Permission denied" in out.reason and "gave up after 3 attempts" in out.reason
    assert "nsbs_matched_detections_2022.zip" in out.reason
    assert sleep.delays == [1, 2]


async def test_permanent_errors_fail_at_once(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    store = FlakyStore(failures=1, error=SourceError("staged file /s/f.zip does not exist"))
    out = await handle_extract_created(created(tmp_path), store, Retry(sleep=sleep))
    assert isinstance(out, ExtractFailed)
    assert "does not exist" in out.reason
    assert sleep.delays == [] and len(store.calls) == 1


async def test_traversal_in_code_fails_the_job_and_writes_nothing(tmp_path: Path) -> None:
    msg = created(tmp_path)
    msg = msg.model_copy(update={"extract": ExtractKey(code="../../etc", year=2022, type="t")})
    root = tmp_path / "store"
    out = await handle_extract_created(msg, FolderStore(root), Retry(sleep=RecordingSleep()))
    assert isinstance(out, ExtractFailed)
    assert "project code" in out.reason
    assert not root.exists()


async def test_redelivery_against_a_real_folder_store_copies_nothing_new(tmp_path: Path) -> None:
    msg = created(tmp_path, ("a.zip", "a.parquet"))
    fs = FolderStore(tmp_path / "store")
    first = await handle_extract_created(msg, fs)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*") if p.is_file()}
    second = await handle_extract_created(msg, fs)
    assert first == second
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*") if p.is_file()} == stamps


async def test_an_event_without_files_fails(tmp_path: Path) -> None:
    msg = created(tmp_path).model_copy(update={"files": []})
    out = await handle_extract_created(msg, FlakyStore())
    assert isinstance(out, ExtractFailed) and "no files" in out.reason


async def test_files_outside_the_staging_folder_are_refused(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for researchers")
    msg = created(staging, ("nsbs_matched_detections_2022.zip",))
    forged = msg.files[0].model_copy(update={"path": str(staging / ".." / "secret.txt")})
    store = FlakyStore()
    out = await handle_extract_created(msg.model_copy(update={"files": [forged]}), store, staging_dir=staging)
    assert isinstance(out, ExtractFailed) and "outside the staging folder" in out.reason
    assert store.calls == []
    ok = await handle_extract_created(msg, store, staging_dir=staging)
    assert isinstance(ok, ExtractUploaded)
