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
    values: dict[str, object] = {
        "nodes": "OTN=postgresql://svc:node-pw-123@db.example.org/otn",
        "amqp_url": "amqp://guest:mq-pw-456@127.0.0.1:5672/push",
        "smtp_password": "smtp-pw-789",
    }
    return Settings(_env_file=None, **(values | kw))  # type: ignore[arg-type]


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


def test_a_password_that_is_a_common_word_is_masked_alone_not_inside_other_words() -> None:
    # masking it inside words scrambled every file name (`nsbs_matched_***s_2024.zip`) and showed
    # readers exactly where the password's word was
    cfg = settings(smtp_password="detection")
    out = io.StringIO()
    log = setup_logging(cfg, "test", stream=out)
    log.info("NSBS,2024,t built: 814 rows, nsbs_matched_detections_2024.zip")
    log.warning("smtp login as otndc with password %s refused", "detection")
    log.warning("smtp login refused ('detection')")
    lines = out.getvalue().splitlines()
    assert "nsbs_matched_detections_2024.zip" in lines[0]
    assert "with password *** refused" in lines[1] and "('***')" in lines[2]
