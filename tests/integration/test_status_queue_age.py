"""`otn-push status`: the oldest message's age per queue, against a real RabbitMQ with its management API.

The management plugin must not be enabled on the shared node, so these tests start their OWN node (own
name, ports, data and cookie; see tests/rabbit_node.py) with it. Without rabbitmq-server installed they
are skipped; with OTN_PUSH_REQUIRE_RABBIT_MANAGEMENT=1 (as in CI) that is a failure instead.

Every age read is checked against the truth the test knows: never more than the time since the test
began publishing the message (RabbitMQ 3.10 gives quorum queues only a lower bound), and large enough to
name the right message — the one still waiting, not one that has left.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker

from otn_push.cli.status_cmd import age_cell
from otn_push.status.queue_age import AT_LEAST, EXACT
from otn_push.status.queues import (
    AMQP_ONLY,
    NOT_SAMPLED,
    QueueStat,
    queue_flags,
    read_management,
    read_queues,
)
from otn_push.status.snapshot import age_notes
from shared.broker import make_broker, publish
from shared.messages import EXTRACT_CREATED, EXTRACT_REQUESTED
from shared.settings import Settings
from shared.topology import declare_topology, dlq_name, dlx_name, queue_name
from tests.integration.conftest import AMQP_URL, Rabbit
from tests.integration.test_scheduler_cli import cli, environment
from tests.rabbit_node import PrivateRabbit, private_rabbit_node, rabbit_installed, stop_and_remove

pytestmark = pytest.mark.integration

GAP = 20.0  # seconds between the two publishes: several of RabbitMQ's 5 s statistics samples


@pytest.fixture(scope="module")
def management_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    if not rabbit_installed():
        reason = "rabbitmq-server is not installed here: no private node with the management API"
        if os.environ.get("OTN_PUSH_REQUIRE_RABBIT_MANAGEMENT") == "1":
            pytest.fail(reason + " (OTN_PUSH_REQUIRE_RABBIT_MANAGEMENT=1)")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("rabbit-management")
    # statistics each second (default 5): the test waits less; the 5 s samples are RabbitMQ's default
    node = private_rabbit_node(base, management=True, extra_config="collect_statistics_interval = 1000\n")
    node.start()
    try:
        yield node
    finally:
        stop_and_remove(node, base)


def node_settings(node: PrivateRabbit, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "exchange": f"otn.push.age.{uuid.uuid4().hex[:10]}",
        "amqp_url": node.url,
        "management_url": node.management_url,
        "delivery_limit": 3,
        "auto_push": False,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def node_broker(management_rabbit: PrivateRabbit) -> AsyncIterator[Callable[[Settings], RabbitBroker]]:
    """Connected brokers with their topology declared, on the private node; stopped afterwards."""
    started: list[RabbitBroker] = []

    def factory(settings: Settings) -> RabbitBroker:
        broker = make_broker(settings)
        started.append(broker)
        return broker

    yield factory
    for broker in started:
        await broker.stop()


async def connected(factory: Callable[[Settings], RabbitBroker], settings: Settings) -> RabbitBroker:
    broker = factory(settings)
    await broker.connect()
    await declare_topology(broker, settings)
    return broker


async def stat_of(settings: Settings, name: str) -> tuple[QueueStat, list[str]]:
    queues = await read_queues(settings)
    return next(q for q in queues if q.name == name), queue_flags(queues, settings)


class Truth:
    """The latest time the queue's oldest message can have entered it; every age read must fit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since = time.time()

    def check(self, stat: QueueStat) -> None:
        limit = time.time() - self.since
        if stat.oldest_age is not None:
            assert stat.age_basis == AT_LEAST, stat  # quorum queues: never claimed exact
            assert stat.oldest_age <= limit, f"{self.name}: {stat.oldest_age}s > the true {limit:.1f}s"


async def until(
    settings: Settings, name: str, truths: list[Truth], done: Callable[[QueueStat], bool], what: str
) -> tuple[QueueStat, list[str]]:
    """Read the queue until `done`, checking every read against the truth; generous: stats lag."""
    deadline = time.monotonic() + 120
    while True:
        stat, flags = await stat_of(settings, name)
        for truth in truths:
            truth.check(stat)
        if done(stat):
            return stat, flags
        assert time.monotonic() < deadline, f"{name}: never {what}; last read {stat}"
        await asyncio.sleep(0.5)


async def test_work_queue_age_is_the_waiting_message_s_and_flagged(
    management_rabbit: PrivateRabbit, node_broker: Callable[[Settings], RabbitBroker], make_settings
) -> None:
    settings = node_settings(management_rabbit, status_max_message_age=10)
    broker = await connected(node_broker, settings)
    jobs, files = queue_name(settings, "extractor.jobs"), queue_name(settings, "uploader.files")

    first = Truth(jobs)
    await publish(broker, settings, EXTRACT_REQUESTED, {"n": "A"}, "job-A")
    await publish(broker, settings, EXTRACT_CREATED, {"n": "F"}, "file-F")  # uploader.files: no consumer
    while time.time() - first.since < GAP:
        await until(settings, jobs, [first], lambda s: True, "read")
        await asyncio.sleep(1)
    second = Truth(jobs)
    await publish(broker, settings, EXTRACT_REQUESTED, {"n": "B"}, "job-B")

    # an extractor takes A and works on it: B waits behind it
    connection = await aio_pika.connect(management_rabbit.url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        held: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        work = await channel.get_queue(jobs)
        tag = await work.consume(held.put)
        in_hand = await asyncio.wait_for(held.get(), 30)
        assert in_hand.message_id == "job-A"

        # the age is A's (in hand, still in the queue), more than B could account for
        stat, flags = await until(
            settings,
            jobs,
            [first],
            lambda s: (
                (s.ready, s.unacked, s.consumers) == (1, 1, 1)
                and (s.oldest_age or 0) > time.time() - second.since
            ),
            "A's age with A in hand and B waiting",
        )
        assert stat.age_note is None and age_cell(stat).startswith("≥ ")
        assert any(f.startswith(f"queue {jobs}: oldest message waits at least ") for f in flags), flags
        assert f"queue {files} has 1 message(s) and no consumer" in flags
        assert not any("no consumer" in f and jobs in f for f in flags), flags

        # the extractor stops taking work, then finishes A: B, with nobody to take it, is the oldest; once
        # the statistics show it, A's age never comes back
        await work.cancel(tag)
        await in_hand.ack()
        await until(
            settings,
            jobs,
            [first],
            lambda s: (
                (s.ready, s.unacked) == (1, 0)
                and s.oldest_age is not None
                and s.oldest_age <= time.time() - second.since
            ),
            "B's age after A was acknowledged",
        )
        for _ in range(10):
            await until(settings, jobs, [second], lambda s: True, "read")
            await asyncio.sleep(0.5)
    finally:
        await connection.close()

    stat, flags = await until(
        settings, jobs, [second], lambda s: s.consumers == 0 and (s.oldest_age or 0) > 10, "flagged"
    )
    assert f"queue {jobs} has 1 message(s) and no consumer" in flags
    assert any(f.startswith(f"queue {jobs}: oldest message waits at least ") for f in flags), flags

    # the command line shows the same (JSON), measured on the same statistics
    own = make_settings(amqp_url=management_rabbit.url, exchange=settings.exchange)
    env = {
        **environment(own),
        "OTN_PUSH_MANAGEMENT_URL": management_rabbit.management_url,
        "OTN_PUSH_STATUS_MAX_MESSAGE_AGE": "10",
    }
    code, out, err = await cli(env, "status", "--json")
    assert code == 1, err
    shown = {q["name"]: q for q in json.loads(out)["queues"]}
    second.check(QueueStat(**shown[jobs]))
    assert (shown[jobs]["ready"], shown[jobs]["unacked"], shown[jobs]["source"]) == (1, 0, "management")
    assert shown[jobs]["age_basis"] == AT_LEAST and shown[jobs]["oldest_age"] > 10
    assert shown[files]["oldest_age"] > 0 and shown[files]["age_basis"] == AT_LEAST
    assert management_rabbit.management_url.split("@")[0] not in out + err  # no credentials shown


async def test_dead_letter_age_counts_from_arrival_and_a_replay_restarts_it(
    management_rabbit: PrivateRabbit, node_broker: Callable[[Settings], RabbitBroker]
) -> None:
    settings = node_settings(management_rabbit, delivery_limit=1)
    broker = await connected(node_broker, settings)
    jobs, dead = queue_name(settings, "extractor.jobs"), dlq_name(settings, "extractor.jobs")
    connection = await aio_pika.connect(management_rabbit.url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(jobs)
        await publish(broker, settings, EXTRACT_REQUESTED, {"n": "poison"}, "job-poison")
        # handed back past the delivery limit: RabbitMQ itself dead-letters it (no publish is counted)
        first = Truth(dead)
        while (taken := await queue.get(no_ack=False, fail=False)) is not None:
            first = Truth(dead)
            await taken.nack(requeue=True)

        _stat, flags = await until(
            settings, dead, [first], lambda s: s.ready == 1 and (s.oldest_age or 0) > 5, "an aged dead letter"
        )
        assert any(
            f.startswith(f"dead-letter queue {dead} holds 1 message(s), the oldest for at least ")
            for f in flags
        ), flags

        # a second letter, as shared/final_delivery.py makes them (a publish to the dead-letter exchange)
        second = Truth(dead)
        dlx = await channel.get_exchange(dlx_name(settings))
        await dlx.publish(aio_pika.Message(b"{}", message_id="late"), routing_key=jobs)
        await until(settings, dead, [first], lambda s: s.ready == 2, "two dead letters")
        # the first is replayed (taken and acknowledged): the age must not stay the first one's
        letter = await (await channel.get_queue(dead)).get(no_ack=False)
        assert letter.message_id == "job-poison"
        await letter.ack()
        await until(
            settings,
            dead,
            [first],
            lambda s: (
                s.ready == 1 and s.oldest_age is not None and s.oldest_age <= time.time() - second.since
            ),
            "the age of the letter left",
        )
        for _ in range(10):
            await until(settings, dead, [second], lambda s: True, "read")
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def test_a_classic_queue_reports_our_publish_timestamp_exactly(
    management_rabbit: PrivateRabbit, node_broker: Callable[[Settings], RabbitBroker]
) -> None:
    """Where RabbitMQ does track it (classic queues), our publish path's `timestamp` gives the exact age."""
    settings = node_settings(management_rabbit)
    broker = await connected(node_broker, settings)
    name = f"{settings.exchange}.classic-probe"
    connection = await aio_pika.connect(management_rabbit.url)
    try:
        channel = await connection.channel()
        probe = await channel.declare_queue(name, durable=False, arguments={"x-queue-type": "classic"})
        await probe.bind(settings.exchange, routing_key=EXTRACT_REQUESTED)
        since = time.time()
        await publish(broker, settings, EXTRACT_REQUESTED, {"n": "A"}, "job-A")
        stat = QueueStat(name, "probe", "work")
        deadline = time.monotonic() + 120
        while True:
            await asyncio.to_thread(read_management, settings, [stat])
            if stat.oldest_age is not None:
                assert stat.age_basis == EXACT
                # the AMQP timestamp has whole seconds: up to one more than the time since publishing
                assert 0 <= stat.oldest_age <= time.time() - since + 1.0
                if stat.oldest_age >= 2:
                    break
            assert time.monotonic() < deadline, f"no exact age reported: {stat}"
            await asyncio.sleep(0.5)
        await probe.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def test_over_amqp_alone_the_age_is_unknown_and_said_so(rabbit: Rabbit) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, exchange=f"otn.push.test.{uuid.uuid4().hex[:10]}", amqp_url=AMQP_URL
    )
    broker = await rabbit.connected(settings)
    await publish(broker, settings, EXTRACT_REQUESTED, {"n": "A"}, "job-A")
    queues = await read_queues(settings)
    jobs = next(q for q in queues if q.name == queue_name(settings, "extractor.jobs"))
    assert (jobs.ready, jobs.consumers, jobs.source) == (1, 0, "amqp")
    assert (jobs.oldest_age, jobs.age_basis, jobs.age_note) == (None, None, AMQP_ONLY)
    assert age_cell(jobs) == "—"
    assert any("age unknown: AMQP only" in note for note in age_notes(queues, management=False))
    assert f"queue {jobs.name} has 1 message(s) and no consumer" in queue_flags(queues, settings)


async def test_a_queue_declared_since_the_last_statistics_sample_is_read_over_amqp(
    management_rabbit: PrivateRabbit, node_broker: Callable[[Settings], RabbitBroker]
) -> None:
    # the demo's first seconds: the services have just declared their queues and the push's work is
    # waiting, while the management API has no statistics for them yet (it showed 0 ready, 0 consumers)
    settings = node_settings(management_rabbit)
    broker = await connected(node_broker, settings)
    await publish(broker, settings, EXTRACT_REQUESTED, {"n": "A"}, "job-A")
    name = queue_name(settings, "extractor.jobs")
    stat, flags = await stat_of(settings, name)
    assert stat.ready == 1, stat  # from the statistics when they came first, else over AMQP
    if stat.source == "amqp":
        assert (stat.consumers, stat.age_note) == (0, NOT_SAMPLED)
    assert f"queue {name} has 1 message(s) and no consumer" in flags
