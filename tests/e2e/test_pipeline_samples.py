"""Issue 2's round trip through the running services: real OTN samples in, identical extracts out.

Three node databases (OTN, ACT, FACT) hold the four samples; the four services run as processes on the
real RabbitMQ; the CLI adds the list rows and runs `push start --wait`. The files that reach the store
must equal the originals (header equal, lines the same multiset, byte for byte), the list rows end
completed, and starting the push again sends nothing new.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from otn_push.load import load_files
from shared.nodeschema import L
from shared.settings import Settings
from tests.integration.conftest import Rabbit

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.samples]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("scheduler", "extractor", "uploader", "notifier")


def environment(settings: Settings, home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    env.update(
        {
            "OTN_PUSH_NODES": ";".join(f"{k}={v}" for k, v in settings.nodes.items()),
            "OTN_PUSH_HOME_NODE": home,
            "OTN_PUSH_DATABASE_URL": settings.own_database_url,
            "OTN_PUSH_AMQP_URL": settings.amqp_url,
            "OTN_PUSH_EXCHANGE": settings.exchange,
            "OTN_PUSH_STAGING_DIR": str(settings.staging_dir),
            "OTN_PUSH_STORE_DIR": str(settings.store_dir),
            "OTN_PUSH_OUTBOX_DIR": str(settings.outbox_dir),
            "OTN_PUSH_SEND_MAIL": "false",
            "OTN_PUSH_AUTO_PUSH": "false",
            "OTN_PUSH_RETRY_BASE_DELAY": "0.2",
            "COLUMNS": "200",
        }
    )
    return env


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from otn_push.cli import main; main()", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Services:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            log = (self.logs / f"{name}.log").open("ab")
            self.procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{name}", env=self.env, cwd=ROOT, stdout=log, stderr=log
            )

    async def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                codes[name] = await proc.wait()
        return codes

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:] for p in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
async def network(samples_dir: Path, make_nodes) -> AsyncIterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    nodes = await make_nodes("OTN", "ACT", "FACT")
    await load_files(
        nodes,
        [
            samples_dir / "nsbs_matched_detections_2022.zip",
            samples_dir / "serc1_qualified_detections_2017.zip",
        ],
    )
    await load_files(nodes, [samples_dir / "proj67_matched_detections_2017.zip"], default_node="ACT")
    yield nodes


def csv_in_zip(path: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".csv")]
        assert len(names) == 1, f"{path} holds {zf.namelist()}"
        return names[0], zf.read(names[0])


def assert_same_lines(original: bytes, built: bytes) -> None:
    o_lines, b_lines = original.split(b"\r\n"), built.split(b"\r\n")
    assert b_lines[0] == o_lines[0], "header differs"
    missing = collections.Counter(o_lines[1:]) - collections.Counter(b_lines[1:])
    extra = collections.Counter(b_lines[1:]) - collections.Counter(o_lines[1:])
    assert not missing and not extra, f"{sum(missing.values())} lines missing, {sum(extra.values())} extra"


async def list_completion(url: str) -> list[tuple[str, bool, bool]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f"SELECT {L.detection_extract}, {L.completed}, {L.completed_at} FROM {L.table}"
        )
        return sorted((r[0], r[1], r[2] is not None) for r in rows)
    finally:
        await conn.close()


async def push(env: dict[str, str], services: Services, day: str, *extra: str) -> dict:  # type: ignore[type-arg]
    code, out, err = await cli(env, "push", "start", "--push-date", day, "--wait", "--timeout", "240", *extra)
    assert code == 0, f"push start failed ({code}):\n{out}\n{err}\n{services.log_tail()}"
    code, out, err = await cli(env, "push", "status", "--push-date", day, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_samples_round_trip_through_the_services(
    network: dict[str, str], make_settings, rabbit: Rabbit, samples_dir: Path, tmp_path: Path
) -> None:
    settings: Settings = make_settings(nodes=network)
    rabbit.track(settings)
    store = settings.store_dir / "data" / "repository"

    # home node OTN: NSBS matched 2022, listed twice (one job, both rows completed)
    env = environment(settings, "OTN")
    code, _out, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "NSBS,2022,t", "nsbs,2022,t")
    assert code == 0, err
    services = Services(env, tmp_path / "logs-otn")
    await services.start()
    try:
        doc = await push(env, services, "2022-10-20")
        assert [(j["extract"], j["state"]) for j in doc["jobs"]] == [("NSBS,2022,t", "completed")]
        assert doc["jobs"][0]["rows"] == 4067
        name, built = csv_in_zip(store / "nsbs" / "detection-extracts" / "nsbs_matched_detections_2022.zip")
        assert name == "nsbs_matched_detections_2022.csv"
        assert_same_lines(csv_in_zip(samples_dir / "nsbs_matched_detections_2022.zip")[1], built)
        assert (store / "nsbs" / "detection-extracts" / "nsbs_matched_detections_2022.parquet").is_file()
        assert await list_completion(network["OTN"]) == [("NSBS,2022,t", True, True)] * 2
        emails = sorted(p.name for p in settings.outbox_dir.rglob("*.eml"))
        assert emails, "the notifier wrote no simulated email"

        # starting the same push again does nothing new: no new email, nothing rebuilt
        again = await push(env, services, "2022-10-20")
        assert [j["state"] for j in again["jobs"]] == ["completed"]
        assert sorted(p.name for p in settings.outbox_dir.rglob("*.eml")) == emails

        # a manual list in the legacy layout
        legacy = await push(env, services, "2023-02-16", "--extract", "PROJ67,2017,t", "--format", "legacy")
        assert [(j["extract"], j["state"]) for j in legacy["jobs"]] == [("PROJ67,2017,t", "completed")]
        original = csv_in_zip(samples_dir / "proj67_matched_detections_2017.zip")[1]
        built = csv_in_zip(store / "proj67" / "detection-extracts" / "proj67_matched_detections_2017.zip")[1]
        assert legacy["jobs"][0]["rows"] == len([line for line in original.splitlines()[1:] if line.strip()])
        assert len(built.splitlines()) == len([line for line in original.splitlines() if line.strip()])
    finally:
        codes = await services.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{services.log_tail()}"

    # home node ACT: SERC1 qualified 2017 (its list lives in the ACT database)
    env = environment(settings, "ACT")
    code, _, err = await cli(env, "list", "add", "--push-date", "2022-10-20", "SERC1,2017,q")
    assert code == 0, err
    services = Services(env, tmp_path / "logs-act")
    await services.start()
    try:
        doc = await push(env, services, "2022-10-20")
        serc = [j for j in doc["jobs"] if j["extract"] == "SERC1,2017,q"]
        assert [(j["state"], j["rows"]) for j in serc] == [("completed", 37795)]
        built = csv_in_zip(store / "serc1" / "detection-extracts" / "serc1_qualified_detections_2017.zip")[1]
        assert_same_lines(csv_in_zip(samples_dir / "serc1_qualified_detections_2017.zip")[1], built)
        assert await list_completion(network["ACT"]) == [("SERC1,2017,q", True, True)]
    finally:
        codes = await services.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{services.log_tail()}"
