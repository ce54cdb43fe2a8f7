"""`otn-push status` parts without services: flags, the management API path, node flags, formatting."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from otn_push.cli.status_cmd import duration, size
from otn_push.status.nodecheck import NodeCheck, node_flags
from otn_push.status.queues import (
    DEAD,
    WATCH,
    WORK,
    ManagementUnavailable,
    QueueStat,
    expected_queues,
    queue_flags,
    read_management,
)
from shared.nodes import NodeUnavailable, why_unreachable
from shared.settings import Settings
from shared.topology import QUEUES, WATCH_ROLES


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, exchange="otn.push.t", **overrides)  # type: ignore[call-arg]


def test_every_work_queue_and_its_dead_letter_queue_is_watched() -> None:
    names = {q.name: q.kind for q in expected_queues(settings())}
    for role in QUEUES:
        if role in WATCH_ROLES:
            assert names[f"otn-push-t.{role}"] == WATCH
        else:
            assert names[f"otn-push-t.{role}"] == WORK
            assert names[f"otn-push-t.{role}.dlq"] == DEAD


def test_flags_dead_letters_work_without_consumer_backlog_age_and_missing_queues() -> None:
    cfg = settings(status_max_ready=100, status_max_message_age=60)
    queues = [
        QueueStat("a.jobs", "a", WORK, ready=5, consumers=0),  # work, nobody consuming
        QueueStat("b.jobs", "b", WORK, ready=5, consumers=2),  # fine
        QueueStat("c.jobs", "c", WORK, ready=101, consumers=1),  # backlog above the threshold
        QueueStat("d.jobs", "d", WORK, ready=1, consumers=1, oldest_age=61.0),  # too old
        QueueStat("a.jobs.dlq", "a", DEAD, ready=2, consumers=0),
        QueueStat("b.jobs.dlq", "b", DEAD, ready=0, consumers=0),
        QueueStat("e.watch", "e", WATCH, ready=500, consumers=0),  # nobody has to consume it
        QueueStat("f.jobs", "f", WORK, exists=False),
        QueueStat("f.jobs.dlq", "f", DEAD, exists=False),
    ]
    flags = queue_flags(queues, cfg)
    assert flags == [
        f"2 of 9 queues do not exist, e.g. f.jobs: no service has started on the exchange {cfg.exchange} "
        "(OTN_PUSH_EXCHANGE; the demo's is otn.push.demo)",
        "queue a.jobs has 5 message(s) and no consumer",
        "queue c.jobs has 101 ready messages (> 100)",
        "queue d.jobs: oldest message waits 61s (> 60s)",
        "dead-letter queue a.jobs.dlq holds 2 message(s) (see `otn-push dlq`)",
    ]
    healthy = [QueueStat("b.jobs", "b", WORK, ready=5, consumers=2), QueueStat("b.dlq", "b", DEAD, ready=0)]
    assert queue_flags(healthy, cfg) == []


class FakeManagement(BaseHTTPRequestHandler):
    queues: ClassVar[dict[str, dict[str, Any]]] = {}
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        doc = self.queues.get(self.path.split("?", 1)[0])  # the history query string aside
        body = json.dumps(doc).encode() if doc is not None else b'{"error":"Object Not Found"}'
        self.send_response(200 if doc is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def management() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeManagement)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_a_queue_the_management_api_has_not_sampled_yet_is_not_read_as_empty(management: int) -> None:
    cfg = settings(management_url=f"http://guest:guest@127.0.0.1:{management}")
    FakeManagement.queues = {
        "/api/vhosts/%2F": {"name": "/"},
        # RabbitMQ's answer for a queue declared since its last statistics sample: no counts at all
        "/api/queues/%2F/otn-push-t.extractor.jobs": {"name": "otn-push-t.extractor.jobs", "type": "quorum"},
        "/api/queues/%2F/otn-push-t.extractor.jobs.dlq": {"messages_ready": 0, "consumers": 0},
    }
    queues = [q for q in expected_queues(cfg) if q.role == "extractor.jobs"]
    read_management(cfg, queues)
    jobs, dead = queues
    assert (jobs.exists, jobs.ready, jobs.consumers, jobs.source) == (True, None, None, "unsampled")
    assert (dead.ready, dead.source) == (0, "management")


def test_management_api_gives_unacked_consumers_and_oldest_age(management: int) -> None:
    cfg = settings(
        amqp_url="amqp://ops:s3cret@127.0.0.1:5672/otn%2Fprod",
        management_url=f"http://ops:s3cret@127.0.0.1:{management}",
    )
    FakeManagement.seen = []
    FakeManagement.queues = {
        "/api/vhosts/otn%2Fprod": {"name": "otn/prod"},
        "/api/queues/otn%2Fprod/otn-push-t.extractor.jobs": {
            "messages_ready": 7,
            "messages_unacknowledged": 2,
            "consumers": 3,
            "head_message_timestamp": 1_000,
        },
        "/api/queues/otn%2Fprod/otn-push-t.extractor.jobs.dlq": {
            "messages_ready": 1,
            "messages_unacknowledged": 0,
            "consumers": 0,
        },
    }
    queues = [q for q in expected_queues(cfg) if q.role in ("extractor.jobs", "uploader.files")]
    read_management(cfg, queues, now=1_090.0)
    by_name = {q.name: q for q in queues}
    jobs = by_name["otn-push-t.extractor.jobs"]
    assert (jobs.ready, jobs.unacked, jobs.consumers, jobs.oldest_age, jobs.source) == (
        7,
        2,
        3,
        90.0,
        "management",
    )
    dead = by_name["otn-push-t.extractor.jobs.dlq"]
    assert (dead.ready, dead.oldest_age) == (1, None)
    assert not by_name["otn-push-t.uploader.files"].exists
    expected_auth = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    assert {auth for _, auth in FakeManagement.seen} == {expected_auth}
    assert queue_flags(queues, cfg.model_copy(update={"status_max_message_age": 60})) == [
        "2 of 4 queues do not exist, e.g. otn-push-t.uploader.files: no service has started on the exchange "
        f"{cfg.exchange} (OTN_PUSH_EXCHANGE; the demo's is otn.push.demo)",
        "queue otn-push-t.extractor.jobs: oldest message waits 90s (> 60s)",
        "dead-letter queue otn-push-t.extractor.jobs.dlq holds 1 message(s) (see `otn-push dlq`)",
    ]


def test_an_address_that_is_no_management_api_is_unavailable_not_every_queue_missing(
    management: int,
) -> None:
    """A web server that answers 404 to everything (wrong port, a proxy's prefix)."""
    cfg = settings(management_url=f"http://ops:s3cret@127.0.0.1:{management}")
    FakeManagement.queues = {}
    with pytest.raises(ManagementUnavailable) as caught:
        read_management(cfg, expected_queues(cfg))
    assert "no vhost '/' there" in str(caught.value) and "s3cret" not in str(caught.value)


class HtmlEverywhere(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><html><body>Sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_address_that_answers_a_web_page_is_unavailable_in_one_line() -> None:
    """A proxy's login page or a web server answering 200 with HTML to every path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlEverywhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = settings(management_url=f"http://ops:s3cret@127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ManagementUnavailable) as caught:
            read_management(cfg, expected_queues(cfg))
    finally:
        server.shutdown()
        server.server_close()
    message = str(caught.value)
    assert "answered text/html, not JSON (is this the management API's address?)" in message
    assert "s3cret" not in message and "Expecting value" not in message


def test_management_api_unreachable_names_it_without_the_password() -> None:
    cfg = settings(management_url="http://ops:s3cret@127.0.0.1:1")
    with pytest.raises(ConnectionError) as caught:
        read_management(cfg, expected_queues(cfg)[:1])
    assert "management API http://127.0.0.1:1/api/" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_node_flags_unreachable_and_slow() -> None:
    checks = [
        NodeCheck("OTN", "postgresql://x/otn", True, 0.010, "15.2"),
        NodeCheck("ACT", "postgresql://x/act", True, 2.5, "15.2"),
        NodeCheck("FACT", "postgresql://x/fact", False, error="node FACT database unreachable (…): OSError"),
    ]
    assert node_flags(checks, max_latency=2.0) == [
        "node ACT: latency 2500 ms (> 2000 ms)",
        "node FACT database unreachable (…): OSError",
    ]


def test_durations_and_sizes_read_well() -> None:
    assert [duration(s) for s in (None, 5, 65, 3_700, 90_000)] == ["–", "5s", "1m 05s", "1h 01m", "1d 1h"]
    assert [size(n) for n in (512, 2048, 5 * 1024**2)] == ["512 B", "2.0 KB", "5.0 MB"]


def test_why_a_node_is_unreachable_is_said_in_words_then_the_type() -> None:
    import socket

    import asyncpg

    assert why_unreachable(ConnectionRefusedError(111, "Connection refused")) == (
        "connection refused (ConnectionRefusedError)"
    )
    assert why_unreachable(socket.gaierror(-2, "Name or service not known")) == "unknown host (gaierror)"
    assert why_unreachable(TimeoutError()) == "no answer in time (TimeoutError)"
    missing = asyncpg.InvalidCatalogNameError('database "nope" does not exist')
    assert why_unreachable(missing) == 'database "nope" does not exist (InvalidCatalogNameError)'
    assert why_unreachable(OSError("Multiple exceptions: [Errno 111] Connect call failed")) == (
        "Multiple exceptions: [Errno 111] Connect call failed (OSError)"
    )
    unreachable = NodeUnavailable("ACT", "postgresql://u:pw-123@db/act", missing)
    assert str(unreachable) == (
        'node ACT database unreachable (postgresql://u:***@db/act): database "nope" does not exist '
        "(InvalidCatalogNameError)"
    )
