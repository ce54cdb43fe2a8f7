"""The uploader service against the real RabbitMQ: files into the folder store, events out."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from services.uploader.app import build_app
from shared.broker import publish
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    ExtractCreated,
    ExtractFailed,
    ExtractKey,
    ExtractUploaded,
    FileInfo,
)
from shared.settings import Settings
from shared.topology import dlq_name, queue_name
from tests.integration.conftest import Rabbit, get_one

pytestmark = pytest.mark.integration

PUSH = dt.date(2025, 6, 12)


def created(staging: Path, job_id: int, code: str, contents: dict[str, bytes]) -> ExtractCreated:
    staging.mkdir(parents=True, exist_ok=True)
    files = []
    for name, data in contents.items():
        (staging / name).write_bytes(data)
        files.append(
            FileInfo(
                name=name, path=str(staging / name), size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
    return ExtractCreated(
        push_date=PUSH,
        job_id=job_id,
        extract=ExtractKey(code=code, year=2022, type="t"),
        node="OTN",
        files=files,
        rows=3,
    )


def store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_upload_then_redelivery_then_unwritable_store(make_settings: Any, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    app = build_app(settings, broker=rabbit.broker(settings))
    await app.start()
    try:
        sender = await rabbit.connected(settings)
        files = {"nsbs_matched_detections_2022.zip": b"zip", "nsbs_matched_detections_2022.parquet": b"pq"}
        msg = created(settings.staging_dir / "job11", 11, "NSBS", files)
        await publish(sender, settings, EXTRACT_CREATED, msg, "test:created:11")

        out = await get_one(queue_name(settings, "notifier.uploads"), within=20)
        assert out.routing_key == EXTRACT_UPLOADED
        assert out.message_id == f"{EXTRACT_UPLOADED}:{PUSH}:11"
        event = ExtractUploaded.model_validate(json.loads(out.body))
        folder = "data/repository/nsbs/detection-extracts"
        assert [f.path for f in event.files] == [f"{folder}/{name}" for name in files]
        assert all(f.url and f.url.startswith("file://") for f in event.files)
        assert store_files(settings.store_dir) == {f"{folder}/{n}": d for n, d in files.items()}

        # the same event again: the same answer, nothing rewritten
        stamp = (settings.store_dir / folder / "nsbs_matched_detections_2022.zip").stat().st_mtime_ns
        await publish(sender, settings, EXTRACT_CREATED, msg, "test:created:11")
        again = await get_one(queue_name(settings, "notifier.uploads"), within=20)
        assert ExtractUploaded.model_validate(json.loads(again.body)) == event
        assert (settings.store_dir / folder / "nsbs_matched_detections_2022.zip").stat().st_mtime_ns == stamp

        # HFX's folder cannot be created (a file is in the way): retried, then failed with a reason
        (settings.store_dir / "data" / "repository" / "hfx").write_text("in the way")
        bad = created(settings.staging_dir / "job12", 12, "HFX", {"hfx_matched_detections_2022.zip": b"z"})
        await publish(sender, settings, EXTRACT_CREATED, bad, "test:created:12")
        failed_msg = await get_one(queue_name(settings, "notifier.uploads"), within=20)
        assert failed_msg.routing_key == EXTRACT_FAILED
        failed = ExtractFailed.model_validate(json.loads(failed_msg.body))
        assert failed.stage == "upload" and failed.job_id == 12
        assert (
            "cannot create folder" in failed.reason and f"{settings.retry_attempts} attempts" in failed.reason
        )
        assert not any(".part" in name for name in store_files(settings.store_dir))

        # a malformed message is dead-lettered at once, not retried
        await publish(sender, settings, EXTRACT_CREATED, {"job_id": "nope"}, "test:created:bad")
        dead = await get_one(dlq_name(settings, "uploader.files"), within=20)
        assert dead.message_id == "test:created:bad"
    finally:
        await app.stop()
