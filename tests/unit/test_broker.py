"""Broker construction: vhost honoured, no password in what the broker shows, topology names."""

from __future__ import annotations

from shared.broker import make_broker
from shared.settings import Settings
from shared.topology import QUEUES, dlq_name, dlx_name, queue_arguments, queue_name


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_vhost_in_the_url_is_used_and_the_password_is_not_shown() -> None:
    cfg = settings(amqp_url="amqp://push:s3cret@mq.example.org:5673/otn-vhost")
    broker = make_broker(cfg)
    url = str(broker._connection_kwargs["url"])
    assert url.endswith("/otn-vhost")
    assert "mq.example.org:5673" in url
    spec = broker.specification.url  # what AsyncAPI / logs would show
    assert all("s3cret" not in u for u in spec)


def test_queue_names_follow_the_exchange() -> None:
    default = settings()
    assert queue_name(default, "extractor.jobs") == "otn-push.extractor.jobs"
    assert dlx_name(default) == "otn.push.dlx"
    isolated = settings(exchange="otn.push.test.ab12")
    assert queue_name(isolated, "scheduler.events") == "otn-push-test-ab12.scheduler.events"
    assert dlq_name(isolated, "scheduler.events") == "otn-push-test-ab12.scheduler.events.dlq"
    args = queue_arguments(isolated, "uploader.files")
    assert args == {
        "x-delivery-limit": isolated.delivery_limit,
        "x-dead-letter-exchange": "otn.push.test.ab12.dlx",
        "x-dead-letter-routing-key": "otn-push-test-ab12.uploader.files",
    }
    assert set(QUEUES["scheduler.events"]) >= {"extract.created", "project.notified", "extract.failed"}


async def test_transient_faults_are_retried_with_backoff_then_raised() -> None:
    import pytest

    from shared.broker import with_retries
    from shared.nodes import NodeUnavailable

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise NodeUnavailable("OTN", "postgresql://u:pw@h/db", OSError("refused"))
        return "ok"

    assert await with_retries(flaky, attempts=4, base_delay=0.5, what="t", sleep=sleep) == "ok"
    assert delays == [0.5, 1.0]

    async def always_down() -> None:
        raise ConnectionRefusedError("down")

    delays.clear()
    with pytest.raises(ConnectionRefusedError):
        await with_retries(always_down, attempts=3, base_delay=1, what="t", sleep=sleep)
    assert delays == [1, 2]

    async def bug() -> None:
        raise KeyError("not transient")

    delays.clear()
    with pytest.raises(KeyError):
        await with_retries(bug, attempts=3, base_delay=1, what="t", sleep=sleep)
    assert delays == []
