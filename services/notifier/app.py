"""Notifier service wiring: `extract.uploaded` / `extract.failed` in, one email per project,
`project.notified` out through the transactional outbox (relay started with the app).

A malformed message is dead-lettered at once with the reason logged; faults that retrying cannot cure
(unknown node, template error, the mail server refusing the message for good) become
`project.notify_failed` (see handlers); transient faults (node database, own database, SMTP down after
the mailer's own retries) are raised, so the message is requeued until the queue's delivery limit.
"""

import logging
from typing import Any

from faststream import FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.notifier.contacts import ContactDirectory, NodeDirectory, valid_address
from services.notifier.handlers import (
    NotifierPorts,
    give_up,
    handle_extract_failed,
    handle_extract_uploaded,
    parse_cc,
)
from services.notifier.ledger import PRODUCER, SqlNotifierRepository
from services.notifier.mailer import Mailer, make_mailer
from services.notifier.ops import (
    OpsPorts,
    check_ops_settings,
    handle_push_completed,
    ops_recipients,
    report_writer,
    sql_summary,
)
from services.notifier.render import EmailTemplates
from shared.broker import make_broker, parse_or_reject
from shared.db import make_engine, make_sessionmaker
from shared.final_delivery import delivery_count
from shared.messages import (
    EXTRACT_FAILED,
    EXTRACT_UPLOADED,
    PUSH_COMPLETED,
    ExtractFailed,
    ExtractUploaded,
    PushCompleted,
)
from shared.metrics import instrument
from shared.migrations import upgrade_async
from shared.outbox import OutboxRelay
from shared.redact import redact_text
from shared.settings import Settings, SettingsError
from shared.topology import declare_topology, subscriber

log = logging.getLogger("otn_push.notifier")


def build_app(
    settings: Settings,
    mailer: Mailer | None = None,
    directory: ContactDirectory | None = None,
    sessionmaker: async_sessionmaker[Any] | None = None,
    broker: RabbitBroker | None = None,
) -> FastStream:
    cc = parse_cc(settings.smtp_cc)
    for name, value in [("OTN_PUSH_SMTP_FROM", settings.smtp_from)] + [("OTN_PUSH_SMTP_CC", a) for a in cc]:
        if not valid_address(value):
            raise SettingsError(f"setting {name}: {value!r} is not a valid email address")
    ops_to = ops_recipients(settings.ops_email)
    for problem in check_ops_settings(ops_to, settings.report_url):
        raise SettingsError(problem)
    broker = broker or make_broker(settings)
    engine = None
    if sessionmaker is None:
        engine = make_engine(settings.own_database_url)
        sessionmaker = make_sessionmaker(engine)
    ports = NotifierPorts(
        repo=SqlNotifierRepository(sessionmaker),
        directory=directory or NodeDirectory(settings.nodes),
        mailer=mailer or make_mailer(settings),
        templates=EmailTemplates(settings.templates_dir),
        sender=settings.smtp_from,
        cc=cc,
    )
    relay = OutboxRelay(sessionmaker, broker, settings, producer=PRODUCER)
    ops = OpsPorts(
        repo=ports.repo,
        mailer=ports.mailer,
        templates=ports.templates,
        sender=settings.smtp_from,
        recipients=ops_to,
        summary=sql_summary(sessionmaker),
        report_url=settings.report_url,
        report_dir=settings.report_dir,
        write_report=report_writer(settings, sessionmaker),
    )

    @subscriber(broker, settings, "notifier.push")
    async def on_push_completed(body: Any, message: RabbitMessage) -> None:
        completed = parse_or_reject(PushCompleted, body, PUSH_COMPLETED)
        await handle_push_completed(completed, message.message_id, ops)

    @subscriber(broker, settings, "notifier.uploads")
    async def on_event(body: Any, message: RabbitMessage) -> None:
        key = message.raw_message.routing_key or ""
        if key == EXTRACT_UPLOADED:
            uploaded = parse_or_reject(ExtractUploaded, body, key)
            try:
                outcome = await handle_extract_uploaded(uploaded, ports)
            except Exception as exc:
                if delivery_count(message) >= settings.delivery_limit:
                    reason = redact_text(f"{type(exc).__name__}: {exc}", settings.secrets())
                    await give_up(
                        uploaded,
                        f"{reason} (gave up after {delivery_count(message) + 1} deliveries)",
                        ports,
                    )
                    relay.kick()
                raise
            if outcome.status not in ("waiting", "already-notified"):
                relay.kick()
        elif key == EXTRACT_FAILED:
            await handle_extract_failed(parse_or_reject(ExtractFailed, body, key))
        else:
            log.warning("ignored a message with routing key %r", key)

    async def start() -> None:
        if engine is not None:  # our own database, not one a test injected
            await upgrade_async(settings.own_database_url)
        await broker.connect()
        await declare_topology(broker, settings)
        relay.start()
        mode = (
            "sending mail via SMTP" if settings.send_mail else f"simulating mail into {settings.outbox_dir}"
        )
        log.info("notifier ready: %s", mode)

    async def stop() -> None:
        await relay.stop()
        if engine is not None:
            await engine.dispose()

    app = FastStream(broker, logger=log, on_startup=[start], after_shutdown=[stop])
    instrument(app, broker, settings, "notifier")
    return app
