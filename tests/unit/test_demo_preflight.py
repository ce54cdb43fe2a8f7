"""Pre-flight of `otn-push demo`: an unreachable PostgreSQL or RabbitMQ is named in one line with the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from otn_push.demo.preflight import START_POSTGRES, START_RABBITMQ, preflight
from shared.settings import Settings


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings(pg_port: int, amqp_port: int) -> Settings:
    return Settings(
        nodes=f"OTN=postgresql://demo:pg-s3cret@127.0.0.1:{pg_port}/otn_push_demo_otn;"
        f"ACT=postgresql://demo:pg-s3cret@127.0.0.1:{pg_port}/otn_push_demo_act",  # type: ignore[arg-type]
        amqp_url=f"amqp://guest:mq-s3cret@127.0.0.1:{amqp_port}/",
    )


async def test_unreachable_postgres_and_rabbitmq_are_both_named_with_how_to_start_them() -> None:
    pg, mq = closed_port(), closed_port()
    line = await preflight(settings(pg, mq), wait=2)
    assert line is not None and "\n" not in line
    assert f"PostgreSQL is not reachable at 127.0.0.1:{pg}" in line and START_POSTGRES in line
    assert f"RabbitMQ is not reachable at 127.0.0.1:{mq}" in line and START_RABBITMQ in line
    assert "s3cret" not in line


async def test_only_the_unreachable_one_is_named() -> None:
    line = await preflight(settings(closed_port(), closed_port()), rabbitmq=False, wait=2)
    assert line is not None and "PostgreSQL" in line and "RabbitMQ" not in line


def test_otn_push_demo_stops_with_one_line_and_a_failure_code() -> None:
    pg, mq = closed_port(), closed_port()
    env = {
        **os.environ,
        "OTN_PUSH_NODES": f"OTN=postgresql://postgres:pg-s3cret@127.0.0.1:{pg}/otn_push_demo_otn;"
        f"ACT=postgresql://postgres@127.0.0.1:{pg}/otn_push_demo_act",
        "OTN_PUSH_AMQP_URL": f"amqp://guest:mq-s3cret@127.0.0.1:{mq}/",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from otn_push.cli import main; main()", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{pg}" in lines[0] and START_POSTGRES in lines[0]
    assert f"127.0.0.1:{mq}" in lines[0] and START_RABBITMQ in lines[0]
    assert "s3cret" not in lines[0]
