"""Issue 3 faults 4-7: SMTP down, the store unwritable, messages delivered twice, a message that can
never succeed. The four services run as processes; email goes to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from otn_push.demo.generate import NetworkSummary
from shared.broker import make_broker, publish
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_REQUESTED,
    EXTRACT_UPLOADED,
    ExtractFailed,
    ExtractKey,
    ExtractRequested,
    ExtractUploaded,
    FileInfo,
)
from shared.topology import dlq_name
from tests.faults.conftest import PUSH_DATE, FaultSystem, leftovers, one_email_per_project
from tests.integration.conftest import Rabbit, eventually, message_count
from tests.smtp_sink import Inbox, free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def run(*command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, check=False, timeout=60)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extracts_of(summary: NetworkSummary, codes: tuple[str, ...] = ("NSBS", "HFX")) -> list[str]:
    """A few extracts of the given projects (a project's email waits for all of its extracts)."""
    return [e for e in summary.extracts if e.split(",")[0] in codes][:4]


def projects_emailed(jobs: list[dict]) -> set[str]:
    return {j["code"] for j in jobs}


async def test_smtp_down_then_back_every_recipient_gets_one_email(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    labels = extracts_of(summary)
    port = free_port()
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, smtp_port=port, OTN_PUSH_DELIVERY_LIMIT="6")
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    try:
        system.start()
        await system.consuming()
        await system.push(labels)

        async def retrying() -> bool:
            return "not sent (attempt" in system.log_text("notifier")

        await eventually(retrying, "the notifier retrying the SMTP server", within=180)
        controller.start()
        jobs = await system.finished(len(labels))
        assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
        one_email_per_project(inbox, projects_emailed(jobs))
    finally:
        system.stop()
        controller.stop()


async def test_message_that_cannot_succeed_is_dead_lettered_with_its_reason(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    labels = extracts_of(summary, ("NSBS",))
    port = free_port()  # nothing listens there
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, smtp_port=port)
    try:
        system.start()
        await system.consuming()
        # a malformed job: dead-lettered at once, saying what is wrong
        broker = make_broker(system.settings)
        await broker.connect()
        try:
            await publish(broker, system.settings, EXTRACT_REQUESTED, {"job_id": "x"}, "poison:1")
        finally:
            await broker.stop()
        await until_dead_lettered(system, "extractor.jobs")
        [poison] = dead_letters(system, "extractor.jobs")
        assert poison["id"] == "poison:1" and poison["routing_key"] == EXTRACT_REQUESTED
        assert poison["reason"].startswith("malformed extract.requested message: push_date"), poison

        # the mail server stays down beyond every retry: the email's event ends in the notifier's DLQ
        await system.push(labels)
        await until_dead_lettered(system, "notifier.uploads", within=180)
        [dead] = dead_letters(system, "notifier.uploads")
        assert dead["routing_key"] == EXTRACT_UPLOADED
        assert f"SMTP server 127.0.0.1:{port} unreachable" in dead["reason"], dead
        assert f"after {system.settings.delivery_limit + 1} deliveries" in dead["reason"], dead
        # the project's job fails with the reason, so the push ends instead of waiting for ever
        failed = await system.finished(len(labels))
        assert {j["state"] for j in failed} == {"failed"}
        assert all(f"SMTP server 127.0.0.1:{port} unreachable" in (j["reason"] or "") for j in failed), failed
        assert await system.run_state() == "failed"

        # after the fix, `otn-push dlq replay` sends it back: the email goes once, the push completes
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            replayed = system.cli("dlq", "replay", "--queue", "notifier.uploads", "--all")
            assert "1 message(s) replayed" in replayed.stdout

            async def completed() -> bool:
                return await system.run_state() == "completed"

            await eventually(completed, "the push completed after the replay", within=120)
            jobs = await system.finished(len(labels))
            assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
            one_email_per_project(inbox, {"NSBS"})
            assert dead_letters(system, "notifier.uploads") == []
        finally:
            controller.stop()
    finally:
        system.stop()


async def until_dead_lettered(system: FaultSystem, role: str, within: float = 60.0) -> None:
    async def arrived() -> bool:
        return await message_count(dlq_name(system.settings, role)) > 0

    await eventually(arrived, f"a dead letter in {role}", within=within)


def dead_letters(system: FaultSystem, role: str) -> list[dict]:
    return json.loads(system.cli("dlq", "list", "--queue", role, "--json").stdout)


async def test_store_unwritable_fails_the_jobs_with_the_reason_and_writes_nothing(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    labels = extracts_of(summary, ("HFX",))
    # root ignores permissions: a store whose root is a file cannot be written by anyone
    store = tmp_path / "store-is-a-file"
    store.write_text("not a folder\n")
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, OTN_PUSH_STORE_DIR=str(store))
    try:
        system.start()
        await system.consuming()
        await system.push(labels)
        jobs = await system.finished(len(labels))
        assert {j["state"] for j in jobs} == {"failed"}
        for job in jobs:
            reason = job["reason"] or ""
            assert reason.startswith("upload: "), reason
            assert f"store {store}: cannot create folder" in reason and "gave up after 3 attempts" in reason
        assert "retrying in" in system.log_text("uploader")
        assert store.read_text() == "not a folder\n"
        assert list(system.paths.outbox.rglob("*.eml")) == []  # no email for files nobody can fetch
    finally:
        system.stop()


async def test_messages_delivered_twice_make_one_file_one_upload_one_email(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    labels = extracts_of(summary, ("NSBS",))
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, smtp_port=port)
    try:
        system.start()
        await system.consuming()
        await system.push(labels)
        jobs = await system.finished(len(labels))
        assert {j["state"] for j in jobs} == {"completed"}
        one_email_per_project(inbox, {"NSBS"})
        stored = {p: p.stat().st_mtime_ns for p in system.paths.store.rglob("*") if p.is_file()}
        assert len(stored) == 2 * len(labels)

        # every message of one job published again by hand, with the ids the services used
        job = jobs[0]
        key = ExtractKey(code=job["code"], year=job["year"], type=job["type"])
        folder = system.paths.staging / PUSH_DATE.isoformat() / f"{key.code}_{key.year}_{key.type}"
        created = json.loads((folder / "manifest.json").read_text())["created"]
        created["job_id"] = job["id"]
        uploaded = ExtractUploaded(
            push_date=PUSH_DATE,
            job_id=job["id"],
            extract=key,
            node="OTN",
            files=[FileInfo.model_validate(f) for f in job["files"]],
            rows=created["rows"],
        )
        broker = make_broker(system.settings)
        await broker.connect()
        try:
            s = system.settings
            request = ExtractRequested(push_date=PUSH_DATE, job_id=job["id"], extract=key)
            label = f"{PUSH_DATE}:{key.code}:{key.year}:{key.type}"
            await publish(broker, s, EXTRACT_REQUESTED, request, f"{EXTRACT_REQUESTED}:{label}:1")
            await publish(broker, s, EXTRACT_CREATED, created, f"{EXTRACT_CREATED}:dup:{label}")
            await publish(
                broker, s, EXTRACT_UPLOADED, uploaded, f"{EXTRACT_UPLOADED}:{PUSH_DATE}:{job['id']}"
            )

            async def handled() -> bool:
                return (
                    "announcing them again" in system.log_text("extractor")
                    and system.log_text("uploader").count("already stored") >= 4
                )

            await eventually(handled, "the duplicates to reach the extractor and the uploader", within=60)
            # a marker behind the duplicates in the notifier's queue (one consumer, prefetch 1)
            marker = ExtractFailed(
                push_date=PUSH_DATE,
                job_id=10**9,
                extract=ExtractKey(code="MARKER", year=2024, type="t"),
                stage="upload",
                reason="marker",
            )
            await publish(broker, s, EXTRACT_FAILED, marker, "marker")
        finally:
            await broker.stop()

        async def marker_seen() -> bool:
            return "MARKER,2024,t failed at upload" in system.log_text("notifier")

        await eventually(marker_seen, "the notifier to pass the duplicates", within=60)
        one_email_per_project(inbox, {"NSBS"})
        now = {p: p.stat().st_mtime_ns for p in system.paths.store.rglob("*") if p.is_file()}
        assert now == stored  # nothing uploaded again
        assert system.log_text("extractor").count(f"{key.label} built:") == 1
        jobs_after = await system.jobs()
        assert [(j["state"], j["attempts"]) for j in jobs_after] == [("completed", 1)] * len(labels)
        assert leftovers(system.paths.store) == []
    finally:
        system.stop()
        controller.stop()


async def test_store_disk_full_leaves_no_partial_file_and_a_rerun_completes(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    labels = extracts_of(summary, ("HFX",))
    store = tmp_path / "small-store"
    store.mkdir()
    # a real disk that fills up part-way through the uploads: a 96 KiB tmpfs
    mounted = run("mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(store))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, OTN_PUSH_STORE_DIR=str(store))
    try:
        system.start()
        await system.consuming()
        await system.push(labels)

        async def settled() -> bool:
            jobs = await system.jobs()
            return len(jobs) == len(labels) and all(
                j["state"] in ("completed", "failed", "notifying") for j in jobs
            )

        await eventually(settled, "every upload to succeed or fail", within=240)
        jobs = await system.jobs()
        failed = [j for j in jobs if j["state"] == "failed"]
        assert failed, "the store never filled up: nothing was tested"
        for job in failed:
            reason = job["reason"] or ""
            assert reason.startswith("upload: ") and "No space left on device" in reason, reason
            assert "gave up after 3 attempts" in reason
        # whatever is in the store is complete: each file as the extractor hashed it, no temp file
        built = {f["name"]: f["sha256"] for j in jobs for f in j["files"]}
        for path in (p for p in store.rglob("*") if p.is_file()):
            assert not path.name.startswith(".") and sha256(path) == built[path.name], path.name

        # more room, the same push again: only the failed jobs are done, and the push completes
        assert run("mount", "-o", "remount,size=64m", str(store)).returncode == 0
        await system.push(labels)
        retried = {j["id"] for j in failed}

        async def restarted() -> bool:
            return all(j["attempts"] == 2 for j in await system.jobs() if j["id"] in retried)

        await eventually(restarted, "the failed jobs to be requested again", within=60)
        jobs = await system.finished(len(labels))
        assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
        assert {j["id"] for j in jobs if j["attempts"] == 2} == retried
        assert leftovers(store) == []
    finally:
        system.stop()
        run("umount", "-l", str(store))
