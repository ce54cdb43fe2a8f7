"""Fault tests: the four services as real processes on a generated network, then something breaks.

- `fault_network`: three node databases (OTN, ACT, FACT) with a generated network (session-wide, read
  only: pushes use a manual extract list, so the node's list rows are never completed by a test);
- `FaultSystem`: one system of services for a test (own database, unique exchange, own folders), where
  each service can be started more than once, killed, or stopped; the push is read from the own tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from otn_push.cli.push_cmd import send_start
from otn_push.demo.generate import NetworkSummary, generate_network
from otn_push.demo.run import SERVICES, DemoPaths, Service, start_service, stop_services, wait_consuming
from shared.messages import ExtractKey, PushStart
from shared.nodes import connection, ensure_database, init_schema
from shared.settings import Settings
from tests.conftest import PG_ADMIN, pg_url
from tests.e2e.conftest import make_settings, own_db, rabbit, test_id
from tests.integration.conftest import AMQP_URL, Rabbit
from tests.smtp_sink import Inbox

__all__ = ["make_settings", "own_db", "rabbit", "test_id"]

ROOT = Path(__file__).resolve().parents[2]
PUSH_DATE = dt.date(2024, 10, 17)
DETECTIONS = 20_000  # the core projects over two years: 28 extracts of 200-3,000 rows


@pytest.fixture(scope="session")
async def fault_network() -> AsyncIterator[tuple[dict[str, str], NetworkSummary]]:
    tag = uuid.uuid4().hex[:8]
    nodes = {name: pg_url(f"otn_push_test_{tag}_fault_{name.lower()}") for name in ("OTN", "ACT", "FACT")}
    try:
        for name, url in nodes.items():
            await ensure_database(name, url)
            async with connection(name, url) as conn:
                await init_schema(conn)
        summary = await generate_network(
            nodes, seed=11, push_date=PUSH_DATE, detections=DETECTIONS, home_node="OTN"
        )
        yield nodes, summary
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            for url in nodes.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()


def keys(labels: list[str]) -> list[ExtractKey]:
    out = []
    for label in labels:
        code, year, type_ = label.split(",")
        out.append(ExtractKey(code=code, year=int(year), type=type_))  # type: ignore[arg-type]
    return out


class FaultSystem:
    """Services as processes for one test; `env` may override any setting (e.g. a node URL, SMTP)."""

    def __init__(
        self,
        nodes: dict[str, str],
        own_db: str,
        base: Path,
        rabbit: Rabbit,
        *,
        smtp_port: int | None = None,
        amqp_url: str = AMQP_URL,
        **env: str,
    ) -> None:
        self.paths = DemoPaths(base)
        for folder in (self.paths.store, self.paths.staging, self.paths.outbox, self.paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.own_db = own_db
        self.env = {
            "OTN_PUSH_NODES": ";".join(f"{n}={u}" for n, u in nodes.items()),
            "OTN_PUSH_HOME_NODE": "OTN",
            "OTN_PUSH_DATABASE_URL": own_db,
            "OTN_PUSH_AMQP_URL": amqp_url,
            "OTN_PUSH_EXCHANGE": f"otn.push.fault-{uuid.uuid4().hex[:8]}",
            "OTN_PUSH_STORE_DIR": str(self.paths.store),
            "OTN_PUSH_STAGING_DIR": str(self.paths.staging),
            "OTN_PUSH_OUTBOX_DIR": str(self.paths.outbox),
            "OTN_PUSH_SEND_MAIL": "true" if smtp_port else "false",
            "OTN_PUSH_SMTP_HOST": "127.0.0.1",
            "OTN_PUSH_SMTP_PORT": str(smtp_port or 25),
            "OTN_PUSH_AUTO_PUSH": "false",
            "OTN_PUSH_RETRY_ATTEMPTS": "3",
            "OTN_PUSH_RETRY_BASE_DELAY": "0.2",
            "OTN_PUSH_DELIVERY_LIMIT": "3",
            "OTN_PUSH_SHUTDOWN_GRACE": "20",
            "OTN_PUSH_METRICS_PORT": "0",
            "OTN_PUSH_LOG_LEVEL": "INFO",
        }
        self.env.update(env)
        self.settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            **{k.removeprefix("OTN_PUSH_").lower(): v for k, v in self.env.items()},  # type: ignore[arg-type]
        )
        rabbit.track(self.settings)
        self.services: list[Service] = []

    def start(self, *names: str) -> list[Service]:
        started = []
        for name in names or SERVICES:
            n = sum(1 for s in self.services if s.name == name) + 1
            started.append(start_service(name, self.env, self.paths.logs / f"{name}-{n}.log", ROOT))
        self.services += started
        return started

    def running(self, name: str) -> list[Service]:
        return [s for s in self.services if s.name == name and s.process.poll() is None]

    async def consuming(self) -> None:
        await wait_consuming(self.settings, [s for s in self.services if s.process.poll() is None], 120)

    async def push(self, labels: list[str]) -> None:
        cmd = PushStart(push_date=PUSH_DATE, extracts=keys(labels), requested_by="fault test")
        await send_start(self.settings, cmd)

    async def jobs(self) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.own_db)
        try:
            rows = await conn.fetch(
                "SELECT id, code, year, type, state, reason, attempts, files FROM otn_push.jobs "
                "WHERE push_date = $1 ORDER BY id",
                PUSH_DATE,
            )
        finally:
            await conn.close()
        return [{**dict(r), "files": json.loads(r["files"] or "[]")} for r in rows]

    async def run_state(self) -> str | None:
        conn = await asyncpg.connect(self.own_db)
        try:
            return await conn.fetchval("SELECT state FROM otn_push.push_runs WHERE push_date = $1", PUSH_DATE)
        finally:
            await conn.close()

    async def finished(self, expected: int, within: float = 240.0) -> list[dict[str, Any]]:
        """Wait until the run is finished with `expected` jobs, all completed or failed."""
        deadline = time.monotonic() + within
        while True:
            jobs = await self.jobs()
            done = [j for j in jobs if j["state"] in ("completed", "failed")]
            if len(jobs) >= expected and len(done) == len(jobs) and await self.run_state() != "running":
                return jobs
            if time.monotonic() > deadline:
                states = sorted((j["code"], j["year"], j["type"], j["state"]) for j in jobs)
                raise AssertionError(f"push not finished in {within:.0f}s: {states}\n{self.logs()}")
            await asyncio.sleep(0.3)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`otn-push ARGS` with the services' environment; must succeed."""
        env = {**os.environ, **self.env, "COLUMNS": "200"}
        cli = str(Path(sys.executable).parent / "otn-push")
        done = subprocess.run(
            [cli, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        what = f"otn-push {' '.join(args)} -> {done.returncode}"
        assert done.returncode == 0, f"{what}\n{done.stdout}{done.stderr}"
        return done

    def logs(self) -> str:
        return "\n".join(f"--- {s.log.name}\n{s.tail(25)}" for s in self.services)

    def log_text(self, name: str) -> str:
        return "\n".join(s.log.read_text(errors="replace") for s in self.services if s.name == name)

    def kill(self, service: Service, sig: int = signal.SIGKILL) -> None:
        os.kill(service.process.pid, sig)

    def stop(self) -> None:
        stop_services([s for s in self.services if not s.handle.closed])


async def first_part_file(staging: Path, within: float = 90.0) -> Path:
    """The first CSV being written in staging (a build in progress), polled often."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        # a blocking scan on purpose: a thread hop would miss short builds; the folder is small
        for path in staging.rglob("*.csv.*.part"):  # noqa: ASYNC240
            return path
        await asyncio.sleep(0.005)
    raise AssertionError(f"no build in progress seen in {staging} within {within:.0f}s")


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".spool")]


def one_email_per_project(inbox: Inbox, projects: set[str]) -> None:
    counts = Counter(m["X-OTN-Push"] for _, m in inbox.snapshot())
    assert counts == Counter({f"{PUSH_DATE} {p}": 1 for p in projects}), counts
    for project in projects:
        [(rcpts, _)] = inbox.for_push(PUSH_DATE, project)
        assert len(rcpts) == len({r.lower() for r in rcpts})  # nobody twice in one message


class FinalNames:
    """Watches folders while a test runs: the size every final-named file (`*.zip`, `*.parquet`) had
    when it was first seen. A partial file under a final name would show a smaller size than it ends with.
    """

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.first: dict[Path, int] = {}
        self.task: asyncio.Task[None] | None = None

    def scan(self) -> None:
        for folder in self.folders:
            for path in folder.rglob("*"):
                if path.suffix in (".zip", ".parquet") and not path.name.startswith("."):
                    if path not in self.first:
                        with contextlib.suppress(FileNotFoundError):
                            self.first[path] = path.stat().st_size

    async def _watch(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def grown(self) -> list[str]:
        """Files whose final size differs from the size first seen under their final name."""
        return [str(p) for p, size in self.first.items() if p.exists() and p.stat().st_size != size]
