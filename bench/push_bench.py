"""The push benchmark: one push of many small and medium extracts through the four services as processes,
with one and then with two extractor processes.

Per extract, from the job row (scheduler clock) and the extractor's log lines (`Received`, `… built`,
`Processed`, millisecond timestamps):
- build: `built` − `Received` in the extractor (the engine's work, plus a few ms of handler);
- overhead: everything else the extract costs that is not its build nor waiting for a busy extractor:
  dispatch (extractor free or job created, whichever is later → `Received`), announce (`built` →
  `Processed`), upload (`Processed` → `uploaded_at`), and its share of its project's notification:
  one email and one completion per project, from the project's last upload to `completed_at` (the email
  waits for every extract of the project by design), divided by the project's extracts in the push.
Total: push start command → the last job completed. Speed-up: total with one extractor / with two.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select

from bench.extract_bench import extract_sizes
from bench.seed import PUSH_DATE, bench_nodes, ensure_seeded
from otn_push.demo.run import (
    DemoPaths,
    Service,
    check_alive,
    consumers,
    delete_demo_queues,
    demo_environment,
    demo_settings,
    start_push,
    start_services,
    stop_services,
    wait_consuming,
)
from shared.db import COMPLETED, FAILED, Job, make_engine, make_sessionmaker
from shared.migrations import upgrade_async
from shared.nodes import asyncpg_dsn
from shared.nodeschema import L
from shared.settings import Settings
from shared.topology import queue_name

ROOT = Path(__file__).resolve().parent.parent
PUSH_DETECTIONS = 300_000
PUSH_YEARS = 10
MEDIUM_ROWS = 5_000
# the speed-up run: many medium extracts, where the extractor (not the per-message services) is the work
SPEEDUP_DETECTIONS = 10_000_000  # the extract benchmark's 10M network (seeded once, ~10 minutes)
SPEEDUP_ROWS = (20_000, 150_000)
LINE = re.compile(r"^(\S+Z) \S+\s+(\S+): (.*)$")
RECEIVED = re.compile(r"^Received .*message_id=extract\.requested:[\d-]+:([^:]+):(\d+):(\w):")
PROCESSED = re.compile(r"^Processed .*message_id=extract\.requested:[\d-]+:([^:]+):(\d+):(\w):")
BUILT = re.compile(r"^([^,\s]+),(\d+),(\w) built: ")
HANDLED = re.compile(r"^(Received|Processed) queue=(\S+) .*message_id=(([\w.]+):\S+)")


def _ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def extractor_events(log: Path) -> dict[str, dict[str, dt.datetime]]:
    """Per `CODE,YEAR,TYPE`: the received, built and processed times of its (last) build in this log."""
    found: dict[str, dict[str, dt.datetime]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        when, message = _ts(m.group(1)), m.group(3)
        for kind, pattern in (("received", RECEIVED), ("processed", PROCESSED), ("built", BUILT)):
            hit = pattern.match(message)
            if hit:
                found.setdefault(",".join(hit.groups()), {})[kind] = when
    return found


async def prepare_list(nodes: dict[str, str], extracts: int, rows: tuple[int, int] = (0, MEDIUM_ROWS)) -> int:
    """Fresh own tables; the first `extracts` list rows of the push date with `rows[0]` to `rows[1]` rows
    open (by default at most `MEDIUM_ROWS` rows each: the giant's few huge extracts are the extract
    benchmark's), the others completed."""
    home_name, home = next(iter(nodes.items()))
    low, high = rows
    small = {f"{c},{y},{t}" for c, y, t, n in await extract_sizes(nodes, home_name) if low <= n <= high}
    conn = await asyncpg.connect(asyncpg_dsn(home))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS otn_push CASCADE")
        ids = await conn.fetch(
            f"SELECT {L.id}, {L.detection_extract} FROM {L.table} WHERE {L.push_date} = $1 ORDER BY {L.id}",
            PUSH_DATE,
        )
        keep = [r[0] for r in ids if r[1] in small][:extracts]
        await conn.execute(
            f"UPDATE {L.table} SET {L.completed} = NOT ({L.id} = ANY($2)), "
            f"{L.completed_at} = CASE WHEN {L.id} = ANY($2) THEN NULL ELSE now() END "
            f"WHERE {L.push_date} = $1",
            PUSH_DATE,
            keep,
        )
    finally:
        await conn.close()
    return len(keep)


def _extra_extractor(env: dict[str, str], paths: DemoPaths, n: int) -> Service:
    log = paths.logs / f"extractor-{n}.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.extractor"],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Service("extractor", process, log, handle)


async def _wait_extractors(settings: Settings, services: list[Service], count: int) -> None:
    deadline = time.monotonic() + 90
    while await consumers(settings, queue_name(settings, "extractor.jobs")) < count:
        check_alive(services)
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} extractors consuming after 90s")
        await asyncio.sleep(0.3)


async def _wait_done(settings: Settings, expected: int, services: list[Service], limit: float) -> list[Job]:
    engine = make_engine(settings.own_database_url)
    sessions = make_sessionmaker(engine)
    deadline = time.monotonic() + limit
    try:
        while True:
            check_alive(services)
            async with sessions() as session:
                jobs = list((await session.execute(select(Job).where(Job.push_date == PUSH_DATE))).scalars())
            done = [j for j in jobs if j.state in (COMPLETED, FAILED)]
            if len(jobs) >= expected and len(done) == len(jobs):
                return jobs
            if time.monotonic() > deadline:
                raise RuntimeError(f"push not done after {limit:.0f}s: {len(done)}/{expected} jobs finished")
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def service_busy(logs: list[Path], seconds: float) -> dict[str, Any]:
    """Per service and message type, from `Received`/`Processed` log lines: how many, the median handling
    time, and the share of the push's wall time the service spent handling them (one message at a time:
    a share near 1 is a service the push waits for)."""
    found: dict[str, Any] = {}
    for log in logs:
        service = log.stem  # extractor, extractor-2, uploader, scheduler, notifier
        opened: dict[tuple[str, str], dt.datetime] = {}
        times: dict[str, list[float]] = {}
        for line in log.read_text(errors="replace").splitlines():
            m = LINE.match(line)
            hit = HANDLED.match(m.group(3)) if m else None
            if not m or not hit:
                continue
            kind, queue, message_id, message_type = hit.groups()
            if kind == "Received":
                opened[(queue, message_id)] = _ts(m.group(1))
            elif (queue, message_id) in opened:
                took = (_ts(m.group(1)) - opened.pop((queue, message_id))).total_seconds()
                times.setdefault(message_type, []).append(took)
        entry = found.setdefault(service, {"busy_seconds": 0.0, "messages": {}})
        for message_type, values in times.items():
            entry["busy_seconds"] += sum(values)
            entry["messages"][message_type] = {
                "count": len(values),
                "median_ms": statistics.median(values) * 1000,
                "seconds": sum(values),
            }
    for entry in found.values():
        entry["busy_share"] = entry["busy_seconds"] / seconds if seconds else None
    return found


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used so far; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (every process, ours or not)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / tick, sum(values) / tick


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def analyse(jobs: list[Job], logs: list[Path], started: dt.datetime, extractors: int) -> dict[str, Any]:
    events: dict[str, dict[str, dt.datetime]] = {}
    free_since: dict[str, dt.datetime] = {}  # extract -> when its extractor finished the previous message
    for log in logs:
        found = extractor_events(log)
        ordered = sorted((e for e in found.items() if "received" in e[1]), key=lambda e: e[1]["received"])
        previous: dt.datetime | None = None
        for label, ev in ordered:
            if previous is not None:
                free_since[label] = previous
            previous = ev.get("processed", previous)
        events.update(found)
    last_upload: dict[str, dt.datetime] = {}
    per_project: dict[str, int] = {}
    for j in jobs:
        per_project[j.code] = per_project.get(j.code, 0) + 1
        if j.uploaded_at is not None:
            last_upload[j.code] = max(last_upload.get(j.code, j.uploaded_at), j.uploaded_at)
    builds: list[float] = []
    overheads: list[float] = []
    stages: dict[str, list[float]] = {"dispatch": [], "announce": [], "upload": [], "notify": []}
    failed = [f"{j.code},{j.year},{j.type}: {j.reason}" for j in jobs if j.state != COMPLETED]
    notify_project: dict[str, float] = {}
    for j in jobs:
        ev = events.get(f"{j.code},{j.year},{j.type}", {})
        if j.state != COMPLETED or not {"received", "built", "processed"} <= ev.keys():
            continue
        assert j.uploaded_at is not None and j.completed_at is not None
        ready = max(j.created_at, free_since.get(f"{j.code},{j.year},{j.type}", j.created_at))
        parts = {
            "dispatch": (ev["received"] - ready).total_seconds(),
            "announce": (ev["processed"] - ev["built"]).total_seconds(),
            "upload": (j.uploaded_at - ev["processed"]).total_seconds(),
            "notify": (j.completed_at - last_upload[j.code]).total_seconds() / per_project[j.code],
        }
        notify_project[j.code] = (j.completed_at - last_upload[j.code]).total_seconds()
        for k, v in parts.items():
            stages[k].append(max(v, 0.0))
        builds.append((ev["built"] - ev["received"]).total_seconds())
        overheads.append(sum(max(v, 0.0) for v in parts.values()))
    finished = max(j.completed_at or j.updated_at for j in jobs)
    return {
        "extractors": extractors,
        "extracts": len(jobs),
        "measured": len(builds),
        "failed": failed,
        "rows": sum(j.rows or 0 for j in jobs),
        "total_seconds": (finished - started).total_seconds(),
        "build_seconds": sum(builds),
        "build_ms_median": statistics.median(builds) * 1000 if builds else None,
        "overhead_ms_median": statistics.median(overheads) * 1000 if overheads else float("nan"),
        "overhead_ms_p90": _pct(overheads, 0.9) * 1000 if overheads else float("nan"),
        "stages_ms_median": {k: statistics.median(v) * 1000 for k, v in stages.items() if v},
        "projects": len(per_project),
        "notify_per_project_ms_median": statistics.median(notify_project.values()) * 1000
        if notify_project
        else None,
        "note": f"{len(failed)} failed" if failed else "",
    }


def run_push(
    base: Settings,
    nodes: dict[str, str],
    extracts: int,
    extractors: int,
    work: Path,
    limit: float,
    rows: tuple[int, int] = (0, MEDIUM_ROWS),
    label: str = "small",
) -> dict[str, Any]:
    expected = asyncio.run(prepare_list(nodes, extracts, rows))
    paths = DemoPaths(work / f"push-{label}-{extractors}")
    paths.fresh()
    bench_base = base.model_copy(
        update={"nodes": nodes, "home_node": next(iter(nodes)), "database_url": None}
    )
    env = demo_environment(bench_base, paths, PUSH_DATE, f"otn.push.bench.{uuid.uuid4().hex[:8]}")
    env["OTN_PUSH_LOG_LEVEL"] = "INFO"
    settings = demo_settings(env)
    asyncio.run(upgrade_async(settings.own_database_url))
    services = start_services(env, paths, ROOT)
    try:
        services += [_extra_extractor(env, paths, n) for n in range(2, extractors + 1)]
        asyncio.run(wait_consuming(settings, services))
        asyncio.run(_wait_extractors(settings, services, extractors))
        names = [s.log.stem for s in services]
        cpu_before = [process_cpu(s.process.pid) for s in services]
        machine_before = machine_cpu()
        started = dt.datetime.now(dt.UTC)
        asyncio.run(start_push(settings, PUSH_DATE))
        jobs = asyncio.run(_wait_done(settings, expected, services, limit))
        machine_after = machine_cpu()
        cpu_after = [process_cpu(s.process.pid) for s in services]
    finally:
        stop_services(services)
        asyncio.run(delete_demo_queues(settings))
    logs = [s.log for s in services if s.name == "extractor"]
    found = analyse(jobs, logs, started, extractors)
    found["services"] = service_busy(sorted(paths.logs.glob("*.log")), found["total_seconds"])
    for name, before, after in zip(names, cpu_before, cpu_after, strict=True):
        if name in found["services"] and before is not None and after is not None:
            found["services"][name]["cpu_seconds"] = after - before
    busy, total = (a - b for a, b in zip(machine_after, machine_before, strict=True))
    # the whole machine, all processes (PostgreSQL, RabbitMQ, other people's work) over all cores
    found["machine_cpu_busy_share"] = busy / total if total else None
    found["machine_cpus"] = os.cpu_count()
    return found


def run_push_bench(
    base: Settings,
    extracts: int,
    seed: int,
    work: Path,
    say: Callable[[str], None],
    limit: float = 1800,
    medium_extracts: int = 60,
) -> dict[str, Any]:
    server = asyncpg_dsn(next(iter(base.nodes.values()))).rsplit("/", 1)[0]
    nodes = bench_nodes(server, PUSH_DETECTIONS, seed, 3, tag=f"push{PUSH_YEARS}y")
    asyncio.run(ensure_seeded(nodes, PUSH_DETECTIONS, seed, say, years=PUSH_YEARS))
    sizes = asyncio.run(extract_sizes(nodes, next(iter(nodes))))
    listed = sum(1 for *_key, n in sizes if n <= MEDIUM_ROWS)
    if listed < extracts:
        say(f"the push network lists {listed} extracts of at most {MEDIUM_ROWS:,} rows: pushing all {listed}")
    runs = []
    for k in (1, 2):
        say(f"push of {min(listed, extracts)} extracts with {k} extractor process{'es' if k > 1 else ''}")
        runs.append(run_push(base, nodes, extracts, k, work, limit))
    speedup = runs[0]["total_seconds"] / runs[1]["total_seconds"] if runs[1]["total_seconds"] else None
    found: dict[str, Any] = {
        "detections": PUSH_DETECTIONS,
        "years": PUSH_YEARS,
        "runs": runs,
        "speedup": speedup,
    }
    if medium_extracts:
        found["medium"] = run_medium(base, medium_extracts, seed, work, say, limit)
    return found


def run_medium(
    base: Settings, extracts: int, seed: int, work: Path, say: Callable[[str], None], limit: float
) -> dict[str, Any]:
    """The speed-up run: the first `extracts` listed extracts of `SPEEDUP_ROWS` rows of the 10M network
    (the extract benchmark's: seeded if it is not yet), with one and with two extractor processes."""
    server = asyncpg_dsn(next(iter(base.nodes.values()))).rsplit("/", 1)[0]
    nodes = bench_nodes(server, SPEEDUP_DETECTIONS, seed, 3)
    asyncio.run(ensure_seeded(nodes, SPEEDUP_DETECTIONS, seed, say))
    low, high = SPEEDUP_ROWS
    sizes = asyncio.run(extract_sizes(nodes, next(iter(nodes))))
    listed = sum(1 for *_key, n in sizes if low <= n <= high)
    runs = []
    for k in (1, 2):
        say(
            f"push of {min(listed, extracts)} medium extracts ({low:,} to {high:,} rows) with {k} extractor "
            f"process{'es' if k > 1 else ''}"
        )
        runs.append(run_push(base, nodes, extracts, k, work, limit, SPEEDUP_ROWS, "medium"))
    speedup = runs[0]["total_seconds"] / runs[1]["total_seconds"] if runs[1]["total_seconds"] else None
    return {"detections": SPEEDUP_DETECTIONS, "rows": SPEEDUP_ROWS, "runs": runs, "speedup": speedup}
