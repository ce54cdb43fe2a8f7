"""Structured logging for services and the CLI, with every configured secret masked before output.

`setup_logging(settings, service)` installs one handler on the root logger: plain `key=value` lines or
JSON lines (`Settings.log_json`). A filter rewrites each record's message and arguments so that URL
passwords and the configured secret values never reach any output, whoever logs them (our code,
FastStream, aio-pika, SQLAlchemy).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from shared.redact import redact_text
from shared.settings import Settings

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks URL passwords and the given secret values in a record's message, arguments and extras."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact_text(message, self.secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are rendered from exc_text when present; render once, redacted.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact_text(value, self.secrets))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        parts = [f"{when}Z", f"{record.levelname:<7}", f"{record.name}:", record.getMessage()]
        for key, value in _extras(record).items():
            parts.append(f"{key}={value}")
        line = " ".join(parts)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            doc[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(settings: Settings, service: str, stream: Any = None) -> logging.Logger:
    """Configure the root logger once for a process; returns the service's logger."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else KeyValueFormatter())
    handler.addFilter(RedactingFilter(settings.secrets()))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_otn_push", False):
            root.removeHandler(old)
    handler._otn_push = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # aio-pika / aiormq are chatty at INFO about every reconnect attempt detail
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(f"otn_push.{service}")


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"otn_push.{name}")
