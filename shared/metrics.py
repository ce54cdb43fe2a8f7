"""Prometheus metrics and the health check of a service, on one small HTTP port per service.

`instrument(app, broker, settings, service)` (one line in each `services/*/app.py`):
- adds FastStream's Prometheus middleware (messages received/processed/published, durations, errors);
- adds a domain middleware that counts what the service *publishes* and *consumes*: extracts created,
  uploaded, failed, projects notified, emails sent, rows and bytes of the extracts, time per stage (the
  handler of each message), and redeliveries (retries). Counting at the broker boundary keeps the
  handlers free of metrics code, and each event is counted by the one service that announces it;
- serves `GET /metrics` (Prometheus text format) and `GET /healthz` (200 when the broker answers a
  ping, 503 otherwise) on `settings.metrics_host:(settings.metrics_port + offset of the service)`.

A port already taken (e.g. two extractors on one host) is logged and the service runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from faststream import BaseMiddleware, FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from shared.logs import get_logger
from shared.messages import (
    EXTRACT_CREATED,
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    PROJECT_NOTIFIED,
    PROJECT_NOTIFY_FAILED,
)
from shared.settings import Settings

log = get_logger("metrics")

SERVICE_OFFSETS = {"scheduler": 0, "extractor": 1, "uploader": 2, "notifier": 3}
# what the service's handler of a message does, for the stage-duration histogram
STAGES = {
    "push.start": "schedule",
    "extract.requested": "extract",
    "extract.created": "upload",
    "extract.uploaded": "notify",
    "extract.failed": "record",
    "project.notified": "record",
    "project.notify_failed": "record",
}
PUBLISHED_EVENTS = {
    EXTRACT_CREATED: "created",
    EXTRACT_UPLOADED: "uploaded",
    EXTRACT_FAILED: "failed",
}


def service_port(settings: Settings, service: str) -> int | None:
    """The metrics/health port of a service, or None when metrics are off (`metrics_port = 0`)."""
    if service not in SERVICE_OFFSETS:
        raise KeyError(f"unknown service {service!r}; known: {', '.join(SERVICE_OFFSETS)}")
    if settings.metrics_port <= 0:
        return None
    return settings.metrics_port + SERVICE_OFFSETS[service]


class DomainMetrics:
    """otn-push's own metrics, in the service's registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.extracts = Counter(
            "otn_push_extracts", "Extracts announced by this service, by event", ["event"], registry=registry
        )
        self.rows = Counter(
            "otn_push_rows", "Detection rows in extracts, by event", ["event"], registry=registry
        )
        self.bytes = Counter(
            "otn_push_bytes", "Bytes of extract files, by event", ["event"], registry=registry
        )
        self.projects = Counter(
            "otn_push_projects", "Projects notified or failed to notify", ["event"], registry=registry
        )
        self.emails = Counter("otn_push_emails_sent", "Emails sent (one per recipient)", registry=registry)
        self.retries = Counter(
            "otn_push_retries",
            "Messages handed to this service again (redeliveries), by routing key",
            ["message"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "otn_push_stage_seconds",
            "Time the service's handler took per message, by stage",
            ["stage"],
            buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600),
            registry=registry,
        )

    def published(self, routing_key: str, body: Any) -> None:
        payload = _json(body)
        event = PUBLISHED_EVENTS.get(routing_key)
        if event is not None:
            self.extracts.labels(event).inc()
            if isinstance(payload, dict) and event != "failed":
                self.rows.labels(event).inc(int(payload.get("rows") or 0))
                size = sum(int(f.get("size") or 0) for f in payload.get("files") or [] if isinstance(f, dict))
                self.bytes.labels(event).inc(size)
        elif routing_key == PROJECT_NOTIFIED:
            self.projects.labels("notified").inc()
            if isinstance(payload, dict):
                self.extracts.labels("notified").inc(len(payload.get("job_ids") or []))
                self.emails.inc(len(payload.get("recipients") or []))
        elif routing_key == PROJECT_NOTIFY_FAILED:
            self.projects.labels("notify_failed").inc()

    def consumed(self, routing_key: str, seconds: float, redelivered: bool) -> None:
        self.stage_seconds.labels(STAGES.get(routing_key, routing_key or "other")).observe(seconds)
        if redelivered:
            self.retries.labels(routing_key).inc()


def _json(body: Any) -> Any:
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body


class _DomainMiddleware(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, metrics: DomainMetrics) -> None:
        super().__init__(msg, context=context)
        self.metrics = metrics

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = getattr(msg, "raw_message", None)
        key = str(getattr(raw, "routing_key", "") or "")
        headers = getattr(raw, "headers", None) or {}
        redelivered = bool(getattr(raw, "redelivered", False)) or bool(headers.get("x-delivery-count"))
        started = time.perf_counter()
        try:
            return await call_next(msg)
        finally:
            self.metrics.consumed(key, time.perf_counter() - started, redelivered)

    async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
        result = await call_next(cmd)
        self.metrics.published(str(getattr(cmd, "destination", "") or ""), getattr(cmd, "body", None))
        return result


class MetricsServer:
    """`/metrics` and `/healthz` over plain asyncio HTTP/1.1 (one request per connection)."""

    def __init__(self, registry: CollectorRegistry, healthy: Callable[[], Awaitable[bool]]) -> None:
        self.registry = registry
        self.healthy = healthy
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port)

    @property
    def port(self) -> int | None:
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            elif path == "/healthz":
                ok = await self.healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "text/plain; charset=utf-8", (b"ok\n" if ok else b"broker unreachable\n")
            else:
                status, ctype, body = (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    b"try /metrics or /healthz\n",
                )
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def instrument(app: FastStream, broker: RabbitBroker, settings: Settings, service: str) -> DomainMetrics:
    """Metrics middlewares on the broker and the `/metrics` + `/healthz` server for the app's lifetime."""
    registry = CollectorRegistry()
    broker.add_middleware(
        RabbitPrometheusMiddleware(
            registry=registry, app_name=f"otn-push-{service}", metrics_prefix="faststream"
        )
    )
    domain = DomainMetrics(registry, service)
    broker.add_middleware(partial(_DomainMiddleware, metrics=domain))

    async def healthy() -> bool:
        try:
            return bool(await broker.ping(timeout=2.0))
        except Exception:
            return False

    server = MetricsServer(registry, healthy)
    port = service_port(settings, service)

    async def start() -> None:
        if port is None:
            return
        try:
            await server.start(settings.metrics_host, port)
        except OSError as exc:
            log.warning(
                "%s: metrics and /healthz not served: %s:%d: %s", service, settings.metrics_host, port, exc
            )
            return
        log.info(
            "%s: metrics on http://%s:%d/metrics, health on /healthz", service, settings.metrics_host, port
        )

    app.after_startup(start)
    app.after_shutdown(server.stop)
    app.metrics = domain  # type: ignore[attr-defined]
    app.metrics_server = server  # type: ignore[attr-defined]
    return domain
