"""Issue 3 fault 2: RabbitMQ restarts in the middle of a push. The test runs its OWN RabbitMQ node (own
name, ports and data folder), never the shared one, and restarts it while the services work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from otn_push.demo.generate import NetworkSummary
from tests.faults.conftest import FaultSystem, leftovers, one_email_per_project
from tests.integration.conftest import Rabbit, eventually
from tests.rabbit_node import PrivateRabbit, private_rabbit_node, rabbit_installed, stop_and_remove
from tests.smtp_sink import Inbox, free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    if not rabbit_installed():
        pytest.skip("rabbitmq-server is not installed here")
    base = tmp_path / "rabbitmq"
    rabbit = private_rabbit_node(base)
    rabbit.start()
    try:
        yield rabbit
    finally:
        stop_and_remove(rabbit, base)


async def test_broker_restart_mid_push_loses_nothing_and_does_nothing_twice(
    fault_network: tuple[dict[str, str], NetworkSummary],
    own_db: str,
    tmp_path: Path,
    rabbit: Rabbit,
    private_rabbit: PrivateRabbit,
) -> None:
    nodes, summary = fault_network
    labels = summary.extracts
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    system = FaultSystem(nodes, own_db, tmp_path / "sys", rabbit, smtp_port=port, amqp_url=private_rabbit.url)
    try:
        system.start()
        await system.consuming()
        await system.push(labels)

        async def under_way() -> bool:
            return any(j["state"] != "extracting" for j in await system.jobs())

        await eventually(under_way, "a first extract to be built", within=120)
        private_rabbit.stop()
        left = [j for j in await system.jobs() if j["state"] != "completed"]
        assert left, "the push ended before the broker went down: nothing was tested"
        private_rabbit.start()  # same node, same data: durable queues and persistent messages survive

        jobs = await system.finished(len(labels), within=300)
        assert {j["state"] for j in jobs} == {"completed"}, [(j["code"], j["reason"]) for j in jobs]
        assert {j["attempts"] for j in jobs} == {1}  # nothing requested twice
        assert all(svc.process.poll() is None for svc in system.services), system.logs()
        conn = await asyncpg.connect(own_db)
        try:
            sent = {
                r["project"]
                for r in await conn.fetch("SELECT project FROM otn_push.emails WHERE status = 'sent'")
            }
        finally:
            await conn.close()
        assert len(sent) >= 5, sent
        one_email_per_project(inbox, sent)
        stored = [p for p in system.paths.store.rglob("*") if p.is_file()]
        assert len(stored) == 2 * len(jobs)
        assert leftovers(system.paths.store) == []
        extractor_log = system.log_text("extractor")
        for job in jobs:
            assert extractor_log.count(f"{job['code']},{job['year']},{job['type']} built:") == 1
    finally:
        system.stop()
        controller.stop()
