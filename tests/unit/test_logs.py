"""Structured logging masks secrets wherever they appear in a record."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.logs import setup_logging
from shared.settings import Settings


@pytest.fixture(autouse=True)
def restore_root_logger():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def settings(**kw: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        nodes="OTN=postgresql://svc:node-pw-123@db.example.org/otn",
        amqp_url="amqp://guest:mq-pw-456@127.0.0.1:5672/push",
        smtp_password="smtp-pw-789",
        **kw,
    )


def test_secrets_are_masked_in_messages_args_extras_and_tracebacks() -> None:
    cfg = settings()
    out = io.StringIO()
    log = setup_logging(cfg, "test", stream=out)
    log.info("connecting to %s", cfg.nodes["OTN"])
    log.warning("smtp login with %s failed", "smtp-pw-789", extra={"url": cfg.amqp_url})
    try:
        raise RuntimeError(f"cannot reach {cfg.amqp_url}")
    except RuntimeError:
        log.exception("broker down")
    logging.getLogger("aio_pika.fake").warning("other library: %s", cfg.nodes["OTN"])
    text = out.getvalue()
    for secret in cfg.secrets():
        assert secret not in text
    assert "svc:***@db.example.org" in text
    assert "RuntimeError" in text and "guest:***@127.0.0.1" in text
    assert text.count("\n") >= 4


def test_json_lines() -> None:
    out = io.StringIO()
    log = setup_logging(settings(log_json=True), "svc", stream=out)
    log.info("job %s done", 7, extra={"job_id": 7, "push_date": "2022-10-20"})
    doc = json.loads(out.getvalue().splitlines()[-1])
    assert doc["message"] == "job 7 done" and doc["job_id"] == 7 and doc["logger"] == "otn_push.svc"
    assert doc["level"] == "INFO"
