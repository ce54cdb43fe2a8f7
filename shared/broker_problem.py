"""One line saying why RabbitMQ cannot be used, for the CLI commands that talk to it."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProbableAuthenticationError

from shared.redact import redact_text, redact_url


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_problem(url: str, exc: BaseException) -> str:
    """One line (no password) saying why the broker at `url` cannot be used."""
    where = redact_url(url)
    if isinstance(exc, InvalidFrameError | ProbableAuthenticationError):
        # RabbitMQ closes the connection while opening it: unknown vhost, or a user without access to it
        return (
            f"RabbitMQ at {where} refused the connection: does the vhost {_vhost(url)!r} exist, and may "
            "this user use it (and is the password right)? (OTN_PUSH_AMQP_URL)"
        )
    if isinstance(exc, OSError | AMQPConnectionError | TimeoutError | ConnectionError):
        detail = redact_text(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        return f"RabbitMQ at {where} is unreachable ({detail}); is it running? (OTN_PUSH_AMQP_URL)"
    detail = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])
    return f"cannot use RabbitMQ at {where}: {detail}"
