"""Extractor service on the real RabbitMQ with a fake engine: created, reused, failed, retried."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from services.extractor.app import build_app
from services.extractor.engine import BuiltFile, ExtractInputError, ExtractResult
from shared.broker import publish
from shared.messages import EXTRACT_REQUESTED, ExtractKey, ExtractRequested
from shared.nodes import NodeUnavailable
from shared.settings import Settings
from shared.topology import queue_name
from tests.integration.conftest import Rabbit, eventually, get_one, message_count

pytestmark = pytest.mark.integration

PUSH = dt.date(2022, 10, 20)


class FakeEngine:
    """Writes two small files like the engine; can fail with a given error a number of times first."""

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.calls: list[tuple[str, int, str, Path, str]] = []
        self.errors = list(errors or [])

    async def __call__(
        self,
        nodes: dict[str, str],
        code: str,
        year: int,
        type_code: str,
        out_dir: Path,
        fmt: str = "2025",
        progress: Any = None,
    ) -> ExtractResult:
        self.calls.append((code, year, type_code, out_dir, fmt))
        if self.errors:
            raise self.errors.pop(0)
        files = []
        for kind in ("zip", "parquet"):
            path = out_dir / f"{code.lower()}_matched_detections_{year}.{kind}"
            data = f"{code},{year},{type_code},{fmt},{kind}".encode()
            path.write_bytes(data)
            files.append(BuiltFile(path.name, path, len(data), hashlib.sha256(data).hexdigest(), kind))
        if progress is not None:
            progress(3)
        return ExtractResult(
            code=code,
            year=year,
            type=type_code,
            format=fmt,
            node="OTN",
            basename=f"{code.lower()}_matched_detections_{year}",
            files=files,
            rows=3,
            summary={code: 2, "HFX": 1},
            warnings=["fake warning"],
        )


def request(job_id: int = 1, code: str = "NSBS", fmt: str = "2025") -> ExtractRequested:
    return ExtractRequested(
        push_date=PUSH, job_id=job_id, extract=ExtractKey(code=code, year=2022, type="t"), format=fmt
    )


def read(path: str) -> bytes:
    return Path(path).read_bytes()


async def next_event(settings: Settings, role: str) -> tuple[str, dict[str, Any]]:
    message = await get_one(queue_name(settings, role), within=20)
    return message.routing_key or "", json.loads(message.body)


async def started(settings: Settings, rabbit: Rabbit, engine: FakeEngine):  # type: ignore[no-untyped-def]
    app = build_app(settings, broker=rabbit.broker(settings), build_extract=engine)
    await app.start()
    client = await rabbit.connected(settings)
    return app, client


async def test_request_builds_files_and_announces_them_once(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    engine = FakeEngine()
    app, client = await started(settings, rabbit, engine)
    try:
        await publish(client, settings, EXTRACT_REQUESTED, request(), "r1")
        key, event = await next_event(settings, "uploader.files")
        assert key == "extract.created"
        folder = settings.staging_dir / "2022-10-20" / "NSBS_2022_t"
        assert event["job_id"] == 1 and event["rows"] == 3 and event["node"] == "OTN"
        assert event["summary"] == {"NSBS": 2, "HFX": 1} and event["warnings"] == ["fake warning"]
        assert [Path(f["path"]).parent for f in event["files"]] == [folder.resolve()] * 2
        for f in event["files"]:
            data = read(f["path"])
            assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert (folder / "manifest.json").is_file()
        # the scheduler gets the same event
        assert (await next_event(settings, "scheduler.events"))[1] == event

        # redelivered (or published again by hand): announced again, not rebuilt
        await publish(client, settings, EXTRACT_REQUESTED, request(), "r1-again")
        again = (await next_event(settings, "uploader.files"))[1]
        assert again == event
        assert len(engine.calls) == 1

        # another format is another build
        await publish(client, settings, EXTRACT_REQUESTED, request(fmt="legacy"), "r1-legacy")
        legacy = (await next_event(settings, "uploader.files"))[1]
        assert legacy["format"] == "legacy" and len(engine.calls) == 2
    finally:
        await app.stop()


async def test_bad_input_fails_at_once(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings()
    engine = FakeEngine([ExtractInputError("project 'NOPE' is in no node database")])
    app, client = await started(settings, rabbit, engine)
    try:
        await publish(client, settings, EXTRACT_REQUESTED, request(code="NOPE"), "r2")
        key, event = await next_event(settings, "scheduler.events")
        assert key == "extract.failed"
        assert event["stage"] == "extract" and "NOPE" in event["reason"] and event["job_id"] == 1
        assert len(engine.calls) == 1
        # the notifier hears of it too; the uploader does not
        assert (await next_event(settings, "notifier.uploads"))[0] == "extract.failed"
        assert await message_count(queue_name(settings, "uploader.files")) == 0
        assert not list((settings.staging_dir / "2022-10-20" / "NOPE_2022_t").glob("*.zip"))
    finally:
        await app.stop()


async def test_unreachable_node_is_retried_then_fails_naming_it(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings(retry_attempts=3, retry_base_delay=0.01)
    down = NodeUnavailable("ACT", "postgresql://u:secret@nowhere/act", OSError("refused"))
    engine = FakeEngine([down, down, down])
    app, client = await started(settings, rabbit, engine)
    try:
        await publish(client, settings, EXTRACT_REQUESTED, request(), "r3")
        key, event = await next_event(settings, "scheduler.events")
        assert key == "extract.failed"
        assert "node ACT" in event["reason"] and "3 attempts" in event["reason"]
        assert "secret" not in event["reason"]
        assert len(engine.calls) == 3
    finally:
        await app.stop()


async def test_transient_failure_then_success_and_leftovers_cleared(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings(retry_attempts=3, retry_base_delay=0.01)
    down = NodeUnavailable("OTN", "postgresql://postgres@nowhere/otn", OSError("refused"))
    engine = FakeEngine([down])
    folder = settings.staging_dir / "2022-10-20" / "NSBS_2022_t"
    folder.mkdir(parents=True)
    (folder / ".nsbs_matched_detections_2022.zip.abc.part").write_bytes(b"half a file")
    app, client = await started(settings, rabbit, engine)
    try:
        await publish(client, settings, EXTRACT_REQUESTED, request(), "r4")
        key, _ = await next_event(settings, "uploader.files")
        assert key == "extract.created" and len(engine.calls) == 2
        assert not list(folder.glob("*.part"))
        assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == [
            "manifest.json",
            "nsbs_matched_detections_2022.parquet",
            "nsbs_matched_detections_2022.zip",
        ]
    finally:
        await app.stop()


async def test_a_crashing_engine_fails_the_job_on_the_last_delivery(make_settings, rabbit: Rabbit) -> None:
    settings: Settings = make_settings(delivery_limit=2)
    engine = FakeEngine([RuntimeError("disk full")] * 10)
    app, client = await started(settings, rabbit, engine)
    try:
        await publish(client, settings, EXTRACT_REQUESTED, request(), "r5")
        key, event = await next_event(settings, "scheduler.events")
        assert key == "extract.failed" and "disk full" in event["reason"]
        assert len(engine.calls) == settings.delivery_limit + 1

        async def nothing_left() -> bool:
            return await message_count(queue_name(settings, "extractor.jobs")) == 0

        await eventually(nothing_left, "the request to be settled")
    finally:
        await app.stop()


async def test_duplicate_requests_at_once_build_once(tmp_path: Path) -> None:
    import asyncio

    from services.extractor.handlers import ExtractorPorts, handle_extract_requested

    gate = asyncio.Event()
    engine = FakeEngine()

    async def slow_engine(*args: Any, **kwargs: Any) -> ExtractResult:
        await gate.wait()
        return await engine(*args, **kwargs)

    ports = ExtractorPorts(build_extract=slow_engine, nodes={}, staging_dir=tmp_path)
    first = asyncio.create_task(handle_extract_requested(request(), ports))
    second = asyncio.create_task(handle_extract_requested(request(), ports))
    await asyncio.sleep(0.2)
    gate.set()
    one, two = await asyncio.gather(first, second)
    assert len(engine.calls) == 1
    assert {one.reused, two.reused} == {False, True}
    assert one.message == two.message and one.message_id == two.message_id
