"""A private RabbitMQ node for tests that must not touch the shared one (restarts, plugins, settings).

Own node name, AMQP, distribution and (optionally) management ports, data and log folders, and its own
HOME, so its Erlang cookie is its own too: the shared node's cookie and its epmd registration are never
read or changed (the private node only registers its own name with the running epmd).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbit_installed() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists()


def unused_port(taken: set[int] | None = None) -> int:
    """A free port below the ephemeral range (RabbitMQ cannot bind a port an outgoing socket holds)."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        if taken and port in taken:
            continue
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
    management_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        assert self.management_port is not None, "started without the management plugin"
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def ctl(self, *args: str, timeout: float = 120, tool: str = "rabbitmqctl") -> str:
        done = subprocess.run(
            [str(RABBIT_BIN / tool), "-n", self.node, *args],
            cwd=self.env["RABBITMQ_LOG_BASE"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        return done.stdout.decode(errors="replace")

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
        deadline = time.monotonic() + 180
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


def private_rabbit_node(base: Path, *, management: bool = False, extra_config: str = "") -> PrivateRabbit:
    """A configured (not yet started) node whose files all live under `base`."""
    base.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    dist = unused_port({port})
    config = f"loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:{port}\n"
    plugins = "[]"
    management_port = None
    if management:
        management_port = unused_port({port, dist})
        config += f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management_port}\n"
        plugins = "[rabbitmq_management]"
    (base / "rabbitmq.conf").write_text(config + extra_config)
    (base / "enabled_plugins").write_text(plugins + ".\n")
    node = f"otntest-{uuid.uuid4().hex[:8]}@localhost"
    # written before the first start: the server and the CLI must not race to make different ones
    cookie = base / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
    env = {
        **os.environ,
        "HOME": str(base),  # its own ~/.erlang.cookie
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
    }
    return PrivateRabbit(node, port, env, management_port=management_port)


def stop_and_remove(rabbit: PrivateRabbit, base: Path) -> None:
    try:
        if rabbit.process is not None and rabbit.process.poll() is None:
            rabbit.stop()
    finally:
        shutil.rmtree(base / "mnesia", ignore_errors=True)
