"""Extractor composition root: the job subscriber, publishing the handler's outcome (confirmed)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from services.extractor.handlers import BuildExtract, ExtractorPorts, failed, handle_extract_requested
from shared.broker import make_broker, parse_or_reject, publish
from shared.messages import EXTRACT_REQUESTED, ExtractRequested
from shared.metrics import instrument
from shared.redact import redact_text
from shared.settings import Settings
from shared.topology import declare_topology, subscriber

log = logging.getLogger("otn_push.extractor")


def _default_engine() -> tuple[BuildExtract, Callable[[], Awaitable[None]]]:
    """The real engine, reusing this process's node connections from one build to the next; and the
    function that closes them at shutdown."""
    from services.extractor.engine import ExtractResult, build_extract
    from services.extractor.engine.sessions import NodeSessions

    sessions = NodeSessions()

    async def build(
        nodes: dict[str, str],
        code: str,
        year: int,
        type_code: str,
        out_dir: Path,
        fmt: str = "2025",
        progress: Callable[[int], None] | None = None,
    ) -> ExtractResult:
        return await build_extract(nodes, code, year, type_code, out_dir, fmt, progress, sessions=sessions)

    return build, sessions.close


def delivery_count(message: Any) -> int:
    """How many times the queue handed this message out before (quorum queues count it)."""
    headers = getattr(message.raw_message, "headers", None) or {}
    try:
        return int(headers.get("x-delivery-count", 0) or 0)
    except (TypeError, ValueError):
        return 0


def build_app(
    settings: Settings,
    *,
    broker: RabbitBroker | None = None,
    build_extract: BuildExtract | None = None,
) -> FastStream:
    broker = broker or make_broker(settings)
    shutdown: list[Callable[[], Awaitable[None]]] = []
    if build_extract is None:
        build_extract, close_sessions = _default_engine()
        shutdown.append(close_sessions)
    ports = ExtractorPorts(
        build_extract=build_extract,
        nodes=dict(settings.nodes),
        staging_dir=settings.staging_dir,
        retry_attempts=settings.retry_attempts,
        retry_base_delay=settings.retry_base_delay,
    )

    @subscriber(broker, settings, "extractor.jobs")
    async def on_request(body: Any, message: RabbitMessage) -> None:
        msg = parse_or_reject(ExtractRequested, body, EXTRACT_REQUESTED)
        try:
            outcome = await handle_extract_requested(msg, ports)
        except Exception as exc:
            # Unexpected (a bug, a full disk): let the queue redeliver; on the last delivery the job
            # fails visibly instead of waiting forever for a message that went to the dead-letter queue.
            if delivery_count(message) < settings.delivery_limit:
                raise
            reason = redact_text(f"{type(exc).__name__}: {exc}", settings.secrets())
            log.exception("%s failed on its last delivery", msg.extract.label)
            outcome = failed(msg, f"extractor error: {reason}")
        await publish(broker, settings, outcome.routing_key, outcome.message, outcome.message_id)

    async def startup() -> None:
        settings.staging_dir.mkdir(parents=True, exist_ok=True)
        await broker.connect()
        await declare_topology(broker, settings)

    app = FastStream(broker, logger=log, on_startup=[startup], on_shutdown=shutdown)
    instrument(app, broker, settings, "extractor")
    return app
