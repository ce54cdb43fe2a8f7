"""A service's Prometheus metrics and health check, against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from services.uploader.app import build_app
from shared import health
from shared.broker import publish
from shared.messages import EXTRACT_CREATED
from shared.metrics import service_port
from shared.settings import Settings
from shared.topology import queue_name
from tests.integration.conftest import Rabbit, get_one
from tests.integration.test_uploader_service import created
from tests.smtp_sink import free_port

pytestmark = pytest.mark.integration


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample line of the Prometheus text format (0 when absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_uploader_counts_its_upload_and_answers_health(make_settings: Any, rabbit: Rabbit) -> None:
    base = free_port()
    settings: Settings = make_settings(metrics_port=base - 2)  # the uploader listens on base + 2
    port = service_port(settings, "uploader")
    assert port == base
    app = build_app(settings, broker=rabbit.broker(settings))
    await app.start()
    try:
        status, body = await http_get(port, "/healthz")
        assert (status, body) == (200, "ok\n")
        _, before = await http_get(port, "/metrics")
        assert sample(before, "otn_push_extracts_total", 'event="uploaded"') == 0

        sender = await rabbit.connected(settings)
        files = {
            "nsbs_matched_detections_2022.zip": b"zip-bytes",
            "nsbs_matched_detections_2022.parquet": b"pq",
        }
        await publish(
            sender, settings, EXTRACT_CREATED, created(settings.staging_dir / "j1", 1, "NSBS", files), "m:1"
        )
        await get_one(queue_name(settings, "notifier.uploads"), within=20)

        async def counted() -> str:
            for _ in range(100):
                _, text = await http_get(port, "/metrics")
                if sample(text, "otn_push_extracts_total", 'event="uploaded"') >= 1:
                    return text
                await asyncio.sleep(0.05)
            raise AssertionError("the upload was never counted:\n" + text)

        text = await counted()
        assert sample(text, "otn_push_extracts_total", 'event="uploaded"') == 1
        assert sample(text, "otn_push_rows_total", 'event="uploaded"') == 3
        assert sample(text, "otn_push_bytes_total", 'event="uploaded"') == len(b"zip-bytes") + len(b"pq")
        assert sample(text, "otn_push_stage_seconds_count", 'stage="upload"') == 1
        # FastStream's own middleware counts the message it received on the uploader's queue
        assert re.search(r"^faststream_received_messages_total\{.*\} 1\.0$", text, re.MULTILINE), text

        # the container health check: healthy via this port, unhealthy where nothing listens
        checked = await asyncio.to_thread(health.probe, port)
        assert checked[0] is True
        assert (await asyncio.to_thread(health.probe, free_port()))[0] is False
        assert (await http_get(port, "/nope"))[0] == 404
    finally:
        await app.stop()
    assert (await asyncio.to_thread(health.probe, port))[0] is False


def test_health_cli_names_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert health.main(["nope"]) == 2
    assert "unknown service 'nope'" in capsys.readouterr().err
