"""Issue 3 fault 2: RabbitMQ restarts in the middle of a push. The test runs its OWN RabbitMQ node (own
name, ports and data folder), never the shared one, and restarts it while the services work."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from otn_push.demo.generate import NetworkSummary
from tests.faults.conftest import FaultSystem, leftovers, one_email_per_project
from tests.integration.conftest import Rabbit, eventually
from tests.smtp_sink import Inbox, free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def unused_port() -> int:
    """A free port below the ephemeral range (RabbitMQ cannot bind a port an outgoing socket holds)."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


@dataclass
class PrivateRabbit:
    node: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            cwd=self.env["RABBITMQ_LOG_BASE"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> None:
        out = Path(self.env["RABBITMQ_LOG_BASE"]) / "console.out"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("ab") as handle:
            self.process = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                cwd=out.parent,  # crash dumps land beside its logs, not in the checkout
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # until the node's distribution is up, await_startup fails at once: ask again
        deadline = time.monotonic() + 120
        while True:
            try:
                self.ctl("await_startup", "--timeout", "60")
                return
            except subprocess.CalledProcessError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = out.read_text(errors="replace")[-1500:]
                    raise AssertionError(f"RabbitMQ node {self.node} did not start:\n{tail}") from None
                time.sleep(1)

    def stop(self) -> None:
        self.ctl("stop")
        if self.process is not None:
            self.process.wait(timeout=60)


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        pytest.skip("rabbitmq-server is not installed here")
    base = tmp_path / "rabbitmq"
    base.mkdir()
    port = unused_port()
    dist = unused_port()
    while dist == port:
        dist = unused_port()
    (base / "rabbitmq.conf").write_text(f"loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:{port}\n")
    (base / "enabled_plugins").write_text("[].\n")
    node = f"otnfault-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
    }
    rabbit = PrivateRabbit(node, port, env)
    rabbit.start()
    try:
        yield rabbit
    finally:
        try:
            rabbit.stop()
        finally:
            shutil.rmtree(base / "mnesia", ignore_errors=True)


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
