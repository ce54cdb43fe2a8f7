"""`otn-push demo` for real: the four services as processes, a push to its end, twice (reruns start clean)."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
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


async def test_report_names_failures_with_their_reason_and_says_not_ok(own_db: str, tmp_path: Path) -> None:
    import datetime as dt

    from otn_push.demo.run import DemoPaths, report
    from shared.db import EmailSent, Job, PushRun, make_engine, make_sessionmaker

    push = dt.date(2026, 10, 15)
    engine = make_engine(own_db)
    async with make_sessionmaker(engine)() as session, session.begin():
        run = PushRun(push_date=push, state="failed")
        session.add(run)
        await session.flush()
        files = [
            {"name": "nsbs_matched_detections_2025.zip"},
            {"name": "nsbs_matched_detections_2025.parquet"},
        ]
        session.add_all(
            [
                Job(run_id=run.id, push_date=push, code="NSBS", year=2025, type="t", state="completed",
                    rows=12, files=files),
                Job(run_id=run.id, push_date=push, code="HFX", year=2025, type="q", state="failed",
                    reason="node ACT database unreachable (postgresql://u:***@db/act): OSError"),
                EmailSent(push_date=push, project="NSBS", recipient="w.whitman@otn.example.org",
                          message_id="<1@x>", status="simulated", outbox_file=str(tmp_path / "NSBS-1.eml")),
            ]
        )  # fmt: skip
    await engine.dispose()
    out = io.StringIO()
    settings = Settings(nodes={"OTN": own_db}, database_url=own_db, _env_file=None)  # type: ignore[call-arg]
    ok = await report(settings, push, DemoPaths(tmp_path), Console(file=out, width=200))
    text = out.getvalue()
    assert ok is False
    assert "HFX,2025,q (failed): node ACT database unreachable" in text
    assert "nsbs_matched_detections_2025 (.zip .parquet)" in text
    assert "NSBS: w.whitman@otn.example.org -> NSBS-1.eml" in text
