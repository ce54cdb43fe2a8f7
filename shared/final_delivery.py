"""A message that keeps failing goes to its dead-letter queue with the reason it failed.

A quorum queue dead-letters a message once it was handed back more than `delivery_limit` times, but
RabbitMQ then records only `delivery_limit` as the cause. So this broker middleware catches a handler's
exception on the delivery the queue would dead-letter next (`x-delivery-count >= delivery_limit`), and
a `Rejected` (a message that can never succeed, e.g. malformed) on any delivery, and itself publishes the
message to the queue's DLQ (through the dead-letter exchange; persistent, confirmed) with the original
body, properties and headers plus:

- `x-otn-error`: why (exception type and text, redacted);
- `x-otn-routing-key`: the routing key it was first published with (what a replay must use);
- `x-otn-queue`: the work queue it failed on;

then acknowledges the original. If that publish fails, the exception goes on as before: the queue
redelivers or dead-letters the message itself (with RabbitMQ's `x-death` only), so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from shared.logs import get_logger
from shared.redact import redact_text
from shared.settings import Settings

log = get_logger("final_delivery")

ERROR_HEADER = "x-otn-error"
ROUTING_KEY_HEADER = "x-otn-routing-key"
QUEUE_HEADER = "x-otn-queue"
# RabbitMQ's own per-delivery headers are not copied: the DLQ copy starts afresh
_DROPPED = frozenset({"x-delivery-count", "x-death"})


class Rejected(RejectMessage):
    """A message that can never succeed: dead-lettered at once, with `reason` recorded."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def delivery_count(message: Any) -> int:
    """How many times the queue handed this message out before (quorum queues count it)."""
    raw = getattr(message, "raw_message", message)
    headers = getattr(raw, "headers", None) or {}
    try:
        return int(headers.get("x-delivery-count", 0) or 0)
    except (TypeError, ValueError):
        return 0


def final_delivery(settings: Settings, broker: Callable[[], RabbitBroker]) -> type[BaseMiddleware]:
    """The middleware class for `RabbitBroker(middlewares=[...])`; `broker()` returns the broker itself."""

    class FinalDelivery(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            try:
                return await call_next(msg)
            except Rejected as exc:
                reason = exc.reason
            except RejectMessage:
                raise
            except Exception as exc:
                if delivery_count(msg) < settings.delivery_limit:
                    raise
                text = str(exc).splitlines()[0] if str(exc) else ""
                reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
                reason += f" (after {delivery_count(msg) + 1} deliveries)"
                if not await self._dead_letter(msg, reason):
                    raise
                return None
            if not await self._dead_letter(msg, reason):
                raise RejectMessage()
            return None

        async def _dead_letter(self, msg: RabbitMessage, reason: str) -> bool:
            from shared.broker import PublishError, publish_raw

            subscriber = self.context.get_local("handler_")
            queue = getattr(getattr(subscriber, "queue", None), "name", None)
            raw = msg.raw_message
            if not queue:
                return False
            reason = redact_text(reason, settings.secrets())[:1000]
            headers = {k: v for k, v in (raw.headers or {}).items() if k not in _DROPPED}
            headers[ERROR_HEADER] = reason
            headers.setdefault(ROUTING_KEY_HEADER, raw.routing_key or "")
            headers[QUEUE_HEADER] = queue
            try:
                await publish_raw(broker(), settings, raw, routing_key=queue, headers=headers)
            except PublishError as exc:
                log.error("could not dead-letter a message from %s (%s): %s", queue, reason, exc)
                return False
            log.error(
                "%s message %s dead-lettered to %s.dlq: %s", raw.routing_key, raw.message_id, queue, reason
            )
            return True

    return FinalDelivery
