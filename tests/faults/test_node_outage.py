"""Issue 3 fault 3: one node database becomes unreachable during a push (a TCP proxy the test controls
stands between the services and that node's PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from otn_push.demo.generate import NetworkSummary
from tests.faults.conftest import FaultSystem
from tests.integration.conftest import Rabbit, eventually
from tests.smtp_sink import free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]


class Proxy:
    """A TCP proxy to `target`; `down()` drops every connection and refuses new ones until `up()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


def through(proxy: Proxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))


async def test_node_down_fails_its_jobs_naming_it_and_a_rerun_does_only_those(
    fault_network: tuple[dict[str, str], NetworkSummary], own_db: str, tmp_path: Path, rabbit: Rabbit
) -> None:
    nodes, summary = fault_network
    target = urlsplit(nodes["FACT"])
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.up()
    # every extract reads every node; projects of OTN and ACT keep their contacts readable throughout
    fact_projects = {code for code, node in summary.projects.items() if node == "FACT"}
    labels = [e for e in summary.extracts if e.split(",")[0] not in fact_projects]
    system = FaultSystem({**nodes, "FACT": through(proxy, nodes["FACT"])}, own_db, tmp_path / "sys", rabbit)
    try:
        system.start()
        await system.consuming()
        await system.push(labels)

        async def one_extracted() -> bool:
            return any(j["state"] != "extracting" for j in await system.jobs())

        await eventually(one_extracted, "a first extract to be built", within=120)
        await proxy.down()

        async def settled() -> bool:
            jobs = await system.jobs()
            return len(jobs) == len(labels) and all(
                j["state"] in ("completed", "failed", "notifying") for j in jobs
            )

        await eventually(settled, "every job to be built or failed", within=240)
        first = {(j["code"], j["year"], j["type"]): j for j in await system.jobs()}
        failed = [j for j in first.values() if j["state"] == "failed"]
        assert failed and len(failed) < len(labels)
        for job in failed:
            assert "node FACT database unreachable" in (job["reason"] or ""), job["reason"]
            assert "gave up after 3 attempts" in job["reason"]
        assert "retry 1/2" in system.log_text("extractor")

        # the node is back: the same push again builds only what failed
        await proxy.up()
        await system.push(labels)

        async def restarted() -> bool:
            # the run may look finished until the scheduler takes the new start: wait for the retries
            retried = {f["id"] for f in failed}
            return all(j["attempts"] == 2 for j in await system.jobs() if j["id"] in retried)

        await eventually(restarted, "the failed jobs to be requested again", within=60)
        jobs = await system.finished(len(labels))
        assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
        built = system.log_text("extractor")
        for job in jobs:
            key = (job["code"], job["year"], job["type"])
            was_failed = first[key]["state"] == "failed"
            assert job["attempts"] == (2 if was_failed else 1), key
            assert built.count(f"{job['code']},{job['year']},{job['type']} built:") == 1, key
    finally:
        system.stop()
        await proxy.down()
