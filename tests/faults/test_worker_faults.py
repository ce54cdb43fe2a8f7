"""Issue 3 faults 1 and 8: an extractor killed (-9) or stopped (SIGTERM) in the middle of a build."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

import asyncpg
import pytest

from otn_push.demo.generate import NetworkSummary
from services.extractor.engine import build_extract
from shared.nodeschema import D as DETECTIONS
from tests.faults.conftest import FaultSystem, FinalNames, first_part_file, leftovers
from tests.integration.conftest import Rabbit, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def label_of(job_folder: Path) -> str:
    code, year, type_ = job_folder.name.rsplit("_", 2)
    return f"{code},{year},{type_}"


def stored_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file())


async def assert_all_completed_once(system: FaultSystem, labels: list[str]) -> list[dict]:
    jobs = await system.finished(len(labels))
    assert {(j["code"], j["year"], j["type"]) for j in jobs} == {
        (c, int(y), t) for c, y, t in (label.split(",") for label in labels)
    }
    assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
    # nobody asked for any job twice: the interrupted job was handed back, not requested again
    assert {j["attempts"] for j in jobs} == {1}
    # exactly a zip and a parquet per job in the store, each as the job recorded it; no temp file
    stored = stored_files(system.paths.store)
    assert len(stored) == 2 * len(jobs), [p.name for p in stored]
    recorded = {f["name"]: f["sha256"] for j in jobs for f in j["files"]}
    assert {p.name: sha256(p) for p in stored} == recorded
    assert leftovers(system.paths.store) == [] and leftovers(system.paths.staging) == []
    return jobs


async def test_extractor_killed_mid_build_is_redone_once_identically(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit)
    watch = FinalNames(system.paths.staging, system.paths.store)
    try:
        system.start()
        await system.consuming()
        watch.start()
        await system.push(summary.extracts)
        part = await first_part_file(system.paths.staging)
        [victim] = system.running("extractor")
        system.kill(victim)
        victim.process.wait(timeout=30)
        label = label_of(part.parent)
        # staging never holds a final name that is incomplete: the killed build left only temp files
        assert not (part.parent / "manifest.json").exists()
        system.start("extractor")
        await system.consuming()
        await assert_all_completed_once(system, summary.extracts)
        watch.scan()
        assert len(watch.first) == 4 * len(summary.extracts)  # each file in staging and in the store
        assert watch.grown() == []  # no final name ever showed a partial file

        # the interrupted job was built once, by the new worker, byte-identical to a clean build
        assert f"{label} built" not in victim.tail(1000)
        assert system.log_text("extractor").count(f"{label} built:") == 1
        code, year, type_ = label.split(",")
        clean = await build_extract(nodes, code, int(year), type_, tmp_path / "clean")
        for file in clean.files:
            [published] = list(system.paths.store.rglob(file.name))
            assert sha256(published) == file.sha256, file.name
    finally:
        watch.stop()
        system.stop()


async def test_sigterm_lets_the_job_in_hand_finish_within_the_grace(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    grace = 20.0
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, OTN_PUSH_SHUTDOWN_GRACE=str(grace))
    try:
        system.start()
        await system.consuming()
        await system.push(summary.extracts)
        part = await first_part_file(system.paths.staging)
        label = label_of(part.parent)
        [worker] = system.running("extractor")
        system.kill(worker, signal.SIGTERM)
        try:
            code = worker.process.wait(timeout=grace + 15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"extractor still running {grace + 15:.0f}s after SIGTERM") from None
        assert code == 0, worker.tail(30)
        # the build in hand was finished and announced before the worker left
        assert f"{label} built:" in worker.tail(1000)
        system.start("extractor")
        await system.consuming()
        await assert_all_completed_once(system, summary.extracts)
        assert system.log_text("extractor").count(f"{label} built:") == 1
    finally:
        system.stop()


async def test_sigterm_hands_back_a_job_that_cannot_finish_within_the_grace(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    grace = 2.0
    label = summary.extracts[0]
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, OTN_PUSH_SHUTDOWN_GRACE=str(grace))
    # the detections are locked: the build in hand waits for them as long as this test wants
    locks = [await asyncpg.connect(url) for url in nodes.values()]
    try:
        for conn in locks:
            await conn.execute("BEGIN")
            await conn.execute(f"LOCK TABLE {DETECTIONS.table} IN ACCESS EXCLUSIVE MODE")
        system.start()
        await system.consuming()
        await system.push([label])

        async def build_waiting() -> bool:
            for conn in locks:
                await conn.execute("SELECT pg_stat_clear_snapshot()")  # fresh view inside the transaction
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if waiting:
                    return True
            return False

        await eventually(build_waiting, "the build to wait for the locked detections", within=120)
        [worker] = system.running("extractor")
        system.kill(worker, signal.SIGTERM)
        try:
            worker.process.wait(timeout=grace + 20)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"extractor still running {grace + 20:.0f}s after SIGTERM:\n{worker.tail(40)}"
            ) from None
        assert f"{label} built" not in worker.tail(1000)
        for conn in locks:
            await conn.execute("ROLLBACK")

        # the job was handed back: a new worker builds it, once
        system.start("extractor")
        await system.consuming()
        await assert_all_completed_once(system, [label])
        assert system.log_text("extractor").count(f"{label} built:") == 1
    finally:
        system.stop()
        for conn in locks:
            await conn.close()
