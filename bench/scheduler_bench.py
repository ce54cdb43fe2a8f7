"""The scheduler's cost per `extract.created` / `extract.uploaded` event, handlers called directly.

`python -m bench.scheduler_bench [--compare REV] [--jobs N] [--rounds R]`: a throw-away database
(`otn_push_schedbench_<pid>`, dropped at the end) with one push of N jobs; each round records N
`extract.created` then N `extract.uploaded` events one at a time, with the working tree's handlers and,
when `--compare` names a git revision, with that revision's `services/scheduler/handlers.py`, the two
alternating round by round in one process (the same database, connection pool and machine load).
Prints the median milliseconds per event and the SQL statements each event sends (SQLAlchemy's
`before_cursor_execute`, plus the pool's pre-ping).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
from sqlalchemy import event, update

from services.scheduler import handlers as current
from shared.db import EXTRACTING, Job, PushRun, make_engine, make_sessionmaker
from shared.messages import ExtractCreated, ExtractKey, ExtractUploaded, FileInfo, ProjectNotified
from shared.migrations import upgrade_async

ROOT = Path(__file__).resolve().parent.parent
PUSH_DATE = dt.date(2026, 10, 15)
PROJECT_JOBS = 17


def handlers_at(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:services/scheduler/handlers.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(f"/tmp/otn_push_handlers_{os.getpid()}.py")
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("handlers_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class NoLists:
    async def pending_rows(self, push_date: dt.date) -> list[Any]:
        return []

    async def mark_completed(self, row_ids: Any) -> int:
        return 0


def files(job_id: int, uploaded: bool) -> list[FileInfo]:
    where = "https://store.example/push" if uploaded else "/staging"
    return [
        FileInfo(
            name=f"proj{job_id}_qualified_detections_2025.{ext}",
            path=f"{where}/proj{job_id}_qualified_detections_2025.{ext}",
            size=123_456,
            sha256="ab" * 32,
            url=f"{where}/proj{job_id}.{ext}" if uploaded else None,
        )
        for ext in ("zip", "parquet")
    ]


async def reset(sessions: Any, job_ids: list[int]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(PushRun).values(state="running", finished_at=None))
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(state=EXTRACTING, files=[], rows=None, summary={}, warnings=[], extracted_at=None,
                    uploaded_at=None, notified_at=None, completed_at=None)
        )  # fmt: skip


async def one_round(module: ModuleType, ports: Any, job_ids: list[int], counter: list[int]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    key = ExtractKey(code="PROJ1", year=2025, type="q")
    for kind in ("created", "uploaded"):
        times = []
        before = counter[0]
        for job_id in job_ids:
            if kind == "created":
                msg: Any = ExtractCreated(
                    push_date=PUSH_DATE, job_id=job_id, extract=key, node="OTN", files=files(job_id, False),
                    rows=1234, summary={"PROJ1": 1000, "PROJ2": 234}, warnings=[],
                )  # fmt: skip
                call = module.on_extract_created
            else:
                msg = ExtractUploaded(
                    push_date=PUSH_DATE, job_id=job_id, extract=key, node="OTN", files=files(job_id, True),
                    rows=1234,
                )  # fmt: skip
                call = module.on_extract_uploaded
            started = time.perf_counter()
            moved = await call(msg, ports)
            times.append(time.perf_counter() - started)
            assert moved, f"{kind} did not move job {job_id}"
        found[kind] = {"ms": times, "statements": (counter[0] - before) / len(job_ids)}
    # one `project.notified` per project of PROJECT_JOBS jobs (the small push: 300 extracts, 18 projects)
    times, before = [], counter[0]
    projects = [job_ids[i : i + PROJECT_JOBS] for i in range(0, len(job_ids), PROJECT_JOBS)]
    for ids in projects:
        notified = ProjectNotified(push_date=PUSH_DATE, project="PROJ1", job_ids=ids, recipients=["a@b.c"])
        started = time.perf_counter()
        changed = await module.on_project_notified(notified, ports)
        times.append(time.perf_counter() - started)
        assert changed == ids
    found[f"notified ({PROJECT_JOBS} jobs)"] = {
        "ms": times,
        "statements": (counter[0] - before) / len(projects),
    }
    return found


async def main_async(jobs: int, rounds: int, compare: str | None) -> None:
    name = f"otn_push_schedbench_{os.getpid()}"
    server = os.environ.get("OTN_PUSH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    try:
        await upgrade_async(url)
        engine = make_engine(url)
        counter = [0]

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def count(*_args: Any) -> None:
            counter[0] += 1

        sessions = make_sessionmaker(engine)
        async with sessions() as session, session.begin():
            run = PushRun(push_date=PUSH_DATE, format="2025", state="running", requested_by="bench")
            session.add(run)
            await session.flush()
            rows = [
                Job(run_id=run.id, push_date=PUSH_DATE, code=f"PROJ{i}", year=2025, type="q", node="OTN",
                    state=EXTRACTING, list_row_ids=[i], attempts=1, files=[], summary={}, warnings=[])
                for i in range(jobs)
            ]  # fmt: skip
            session.add_all(rows)
            await session.flush()
            job_ids = [r.id for r in rows]
        variants: dict[str, ModuleType] = {"working tree": current}
        if compare:
            variants = {compare: handlers_at(compare), **variants}
        results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
        statements: dict[str, dict[str, float]] = {v: {} for v in variants}
        for r in range(rounds + 1):  # round 0 warms up (prepared statements, caches) and is not kept
            for label, module in variants.items():
                await reset(sessions, job_ids)
                ports = module.SchedulerPorts(sessions=sessions, lists=NoLists())
                found = await one_round(module, ports, job_ids, counter)
                if r:
                    for kind, v in found.items():
                        results[label].setdefault(kind, []).extend(v["ms"])
                        statements[label][kind] = v["statements"]
        await engine.dispose()
        print(f"{jobs} jobs x {rounds} rounds per variant, alternating; median ms per message (statements)")
        for label in variants:
            cells = [
                f"{kind} {statistics.median(results[label][kind]) * 1000:.2f} ms "
                f"({statements[label][kind]:.0f} statements)"
                for kind in results[label]
            ]
            print(f"  {label:>14}: " + ", ".join(cells))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler_bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", help="a git revision whose scheduler handlers to time alongside")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.jobs, args.rounds, args.compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
