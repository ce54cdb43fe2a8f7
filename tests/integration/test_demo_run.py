"""`otn-push demo` for real: the four services as processes, a push to its end, twice (reruns start clean)."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from rich.console import Console

from otn_push.demo.run import run_demo
from otn_push.status.queues import read_queues
from shared.nodes import connection
from shared.settings import Settings
from tests.conftest import PG_ADMIN, pg_url
from tests.integration.conftest import AMQP_URL, Rabbit

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
async def demo_nodes() -> AsyncIterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    nodes = {name: pg_url(f"otn_push_demo_t{tag}_{name.lower()}") for name in ("OTN", "ACT", "FACT")}
    yield nodes
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for url in nodes.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def fetch(url: str, sql: str) -> list[asyncpg.Record]:
    async with connection("OTN", url) as conn:
        return list(await conn.fetch(sql))


def test_demo_runs_a_push_to_completion_twice(
    demo_nodes: dict[str, str], rabbit: Rabbit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.delenv("OTN_PUSH_SEND_MAIL", raising=False)
    exchange = f"otn.push.demo-{uuid.uuid4().hex[:8]}"
    base = Settings(nodes=demo_nodes, home_node="OTN", amqp_url=AMQP_URL, _env_file=None)  # type: ignore[call-arg]
    rabbit.track(base.model_copy(update={"exchange": exchange}))
    folder = tmp_path / "demo"
    for attempt in (1, 2):
        out = io.StringIO()
        console = Console(file=out, width=200)
        code = run_demo(
            console,
            root=Path.cwd(),
            base=base,
            exchange=exchange,
            folder=folder,
            timeout=300,
            detections=3000,
        )
        text = out.getvalue()
        assert code == 0, f"run {attempt}:\n{text}\n" + "\n".join(
            p.read_text()[-2000:] for p in (folder / "logs").glob("*.log")
        )
        listed = asyncio.run(
            fetch(
                demo_nodes["OTN"],
                "SELECT detection_extract, completed FROM obis.detection_extracts_list "
                "WHERE push_date = (SELECT max(push_date) FROM obis.detection_extracts_list)",
            )
        )
        assert listed and all(row["completed"] for row in listed)
        jobs = asyncio.run(fetch(demo_nodes["OTN"], "SELECT code, type, state, files FROM otn_push.jobs"))
        assert len(jobs) == len(listed) and {j["state"] for j in jobs} == {"completed"}
        stored = {p.name for p in (folder / "store").rglob("*") if p.is_file()}
        assert len(stored) == 2 * len(jobs)  # a zip and a parquet per extract, only from this run
        projects = {j["code"] for j in jobs}
        emails = list((folder / "outbox").rglob("*.eml"))
        assert len(emails) == len(projects)  # one email per project, simulated
        for name in ("scheduler", "extractor", "uploader", "notifier"):
            assert (folder / "logs" / f"{name}.log").is_file()
        assert f"{len(jobs)}/{len(jobs)}" in text and f"emails: {len(projects)}, one per project, to " in text
        # the watch command the demo prints sees the demo's own queues
        assert f"watch it: OTN_PUSH_EXCHANGE={exchange} " in text and "otn-push status --watch" in text
        watched = asyncio.run(read_queues(base.model_copy(update={"exchange": exchange})))
        assert watched and all(q.exists for q in watched if q.kind != "dead-letter")


async def add_failed_push(own_db: str, push: dt.date, rows: Callable[[int], list[object]]) -> None:
    """A failed push run with the rows `rows(run_id)` makes (jobs, emails)."""
    from shared.db import PushRun, make_engine, make_sessionmaker

    engine = make_engine(own_db)
    async with make_sessionmaker(engine)() as session, session.begin():
        run = PushRun(push_date=push, state="failed")
        session.add(run)
        await session.flush()
        session.add_all(rows(run.id))
    await engine.dispose()


async def test_report_names_failures_with_their_reason_and_says_not_ok(own_db: str, tmp_path: Path) -> None:
    from otn_push.demo.run import DemoPaths, report
    from shared.db import EmailSent, Job

    push = dt.date(2026, 10, 15)
    files = [{"name": "nsbs_matched_detections_2025.zip"}, {"name": "nsbs_matched_detections_2025.parquet"}]
    await add_failed_push(own_db, push, lambda run_id: [
        Job(run_id=run_id, push_date=push, code="NSBS", year=2025, type="t", state="completed",
            rows=12, files=files),
        Job(run_id=run_id, push_date=push, code="HFX", year=2025, type="q", state="failed",
            reason="node ACT database unreachable (postgresql://u:***@db/act): OSError"),
        EmailSent(push_date=push, project="NSBS", recipient="w.whitman@otn.example.org",
                  message_id="<1@x>", status="simulated", outbox_file=str(tmp_path / "NSBS-1.eml")),
    ])  # fmt: skip
    out = io.StringIO()
    settings = Settings(nodes={"OTN": own_db}, database_url=own_db, _env_file=None)  # type: ignore[call-arg]
    ok = await report(settings, push, DemoPaths(tmp_path), Console(file=out, width=200))
    text = out.getvalue()
    assert ok is False
    assert "HFX,2025,q (failed): node ACT database unreachable" in text
    assert "nsbs_matched_detections_2025 (.zip .parquet)" in text
    assert "NSBS: w.whitman@otn.example.org -> NSBS-1.eml" in text

    # a push where every extract failed sent no email, and says so plainly
    earlier = dt.date(2026, 6, 18)
    await add_failed_push(own_db, earlier, lambda run_id: [
        Job(run_id=run_id, push_date=earlier, code="HFX", year=2025, type="q", state="failed",
            reason="store unreachable"),
    ])  # fmt: skip
    out = io.StringIO()
    assert await report(settings, earlier, DemoPaths(tmp_path), Console(file=out, width=200)) is False
    text = out.getvalue()
    assert "emails: none sent (no extract reached its email)" in text
    assert "one per project" not in text and ".eml files" not in text


def _processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds `marker` (the test's own exchange name)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_sigterm_stops_the_demo_and_its_services(
    demo_nodes: dict[str, str], rabbit: Rabbit, tmp_path: Path
) -> None:
    """`kill` or `timeout` sends SIGTERM: the demo stops its four services as Ctrl-C does."""
    import os
    import signal
    import subprocess
    import sys
    import time

    exchange = f"otn.push.demo-{uuid.uuid4().hex[:8]}"
    base = Settings(nodes=demo_nodes, home_node="OTN", amqp_url=AMQP_URL, _env_file=None)  # type: ignore[call-arg]
    rabbit.track(base.model_copy(update={"exchange": f"{exchange}.demo"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    env |= {
        "OTN_PUSH_NODES": ";".join(f"{k}={v}" for k, v in demo_nodes.items()),
        "OTN_PUSH_AMQP_URL": AMQP_URL,
        "OTN_PUSH_EXCHANGE": exchange,
        "OTN_PUSH_METRICS_PORT": "0",
    }
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-c", "from otn_push.cli import main; main()", "demo", "--detections", "20000"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while "services consuming" not in log.read_text() and demo.poll() is None:
            assert time.monotonic() < deadline, "the demo never started its services:\n" + log.read_text()
            time.sleep(0.2)
        services = [pid for pid in _processes_with(exchange) if pid != demo.pid]
        assert len(services) == 4, (services, log.read_text())
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError("the demo still runs 120 s after SIGTERM:\n" + log.read_text()) from None
        said = log.read_text()
        assert demo.returncode == 130, said
        assert "interrupted: the services were stopped" in said
        deadline = time.monotonic() + 30
        while _processes_with(exchange) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(exchange) == []
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in _processes_with(exchange):
            os.kill(pid, signal.SIGKILL)
