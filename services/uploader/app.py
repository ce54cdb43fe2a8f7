"""Uploader service wiring: `extract.created` in, files into the document store, `extract.uploaded` out.

The uploader keeps no state of its own: it publishes the result (confirmed, persistent) before the
incoming message is acked, so a crash in between only repeats the upload, which the store recognises
(same sha256) and skips.
"""

import asyncio
import logging
import time
from typing import Any

from faststream import FastStream
from faststream.rabbit import RabbitBroker

from services.uploader.handlers import Retry, handle_extract_created
from services.uploader.store import DocumentStore, StoreError, StoreUnavailable
from services.uploader.store_choice import describe_store, make_store
from shared.broker import StartupError, make_broker, parse_or_reject, publish
from shared.messages import EXTRACT_CREATED, EXTRACT_FAILED, EXTRACT_UPLOADED, ExtractCreated, ExtractUploaded
from shared.metrics import instrument
from shared.settings import Settings
from shared.topology import declare_topology, subscriber

log = logging.getLogger("otn_push.uploader")


def build_app(
    settings: Settings,
    store: DocumentStore | None = None,
    broker: RabbitBroker | None = None,
    retry: Retry | None = None,
) -> FastStream:
    broker = broker or make_broker(settings)
    the_store: DocumentStore = store or make_store(settings)
    the_retry = retry or Retry(attempts=settings.retry_attempts, base_delay=settings.retry_base_delay)

    @subscriber(broker, settings, "uploader.files")
    async def on_extract_created(body: Any) -> None:
        msg = parse_or_reject(ExtractCreated, body, EXTRACT_CREATED)
        result = await handle_extract_created(msg, the_store, the_retry, settings.staging_dir)
        if isinstance(result, ExtractUploaded):
            key, message_id = EXTRACT_UPLOADED, f"{EXTRACT_UPLOADED}:{msg.push_date}:{msg.job_id}"
        else:
            key, message_id = EXTRACT_FAILED, f"{EXTRACT_FAILED}:upload:{msg.push_date}:{msg.job_id}"
        await publish(broker, settings, key, result, message_id)

    async def start() -> None:
        await check_store(the_store, describe_store(settings), settings.store_start_wait)
        await broker.connect()
        await declare_topology(broker, settings)
        log.info("uploader ready: store %s", describe_store(settings))

    app = FastStream(broker, logger=log, on_startup=[start])
    instrument(app, broker, settings, "uploader")
    return app


async def check_store(store: DocumentStore, label: str, wait: float, first_delay: float = 1.0) -> None:
    """A store that refuses the account (or does not exist) stops the uploader with one line at once. One
    that does not answer is asked again for `wait` seconds, then stops it too: taking uploads from a store
    that is not there (a mistyped host or port) would fail every job in turn, each after its retries."""
    check = getattr(store, "check", None)
    if check is None:
        return
    deadline = time.monotonic() + wait
    delay = first_delay
    while True:
        try:
            await check()
            return
        except StoreUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(
                    f"store {label} did not answer for {wait:g} s (OTN_PUSH_STORE_START_WAIT): {exc}"
                ) from None
            pause = min(delay, left)
            log.warning("store %s not reachable at start, asking again in %.1f s: %s", label, pause, exc)
            await asyncio.sleep(pause)
            delay = min(delay * 2, 8.0)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
