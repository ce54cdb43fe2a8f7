"""Domain metrics from the messages a service publishes and consumes (no broker needed)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from shared.metrics import DomainMetrics, service_port
from shared.settings import Settings


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_published_events_become_counts_rows_bytes_and_emails() -> None:
    registry = CollectorRegistry()
    metrics = DomainMetrics(registry, "notifier")
    files = [{"name": "a.zip", "size": 100}, {"name": "a.parquet", "size": 50}]
    metrics.published("extract.created", json.dumps({"rows": 7, "files": files}).encode())
    metrics.published("extract.uploaded", {"rows": 7, "files": files})
    metrics.published("extract.failed", b'{"reason": "x"}')
    metrics.published(
        "project.notified", b'{"job_ids": [1, 2], "recipients": ["a@x.org", "b@x.org", "c@x.org"]}'
    )
    metrics.published("project.notify_failed", b"{}")
    metrics.published("extract.requested", b"{}")  # work, not an outcome: not counted
    assert value(registry, "otn_push_extracts_total", event="created") == 1
    assert value(registry, "otn_push_extracts_total", event="uploaded") == 1
    assert value(registry, "otn_push_extracts_total", event="failed") == 1
    assert value(registry, "otn_push_extracts_total", event="notified") == 2
    assert value(registry, "otn_push_rows_total", event="created") == 7
    assert value(registry, "otn_push_bytes_total", event="uploaded") == 150
    assert value(registry, "otn_push_emails_sent_total") == 3
    assert value(registry, "otn_push_projects_total", event="notify_failed") == 1


def test_consumed_messages_time_their_stage_and_count_redeliveries() -> None:
    registry = CollectorRegistry()
    metrics = DomainMetrics(registry, "extractor")
    metrics.consumed("extract.requested", 2.0, redelivered=False)
    metrics.consumed("extract.requested", 3.0, redelivered=True)
    assert value(registry, "otn_push_stage_seconds_count", stage="extract") == 2
    assert value(registry, "otn_push_stage_seconds_sum", stage="extract") == 5.0
    assert value(registry, "otn_push_retries_total", message="extract.requested") == 1


def test_each_service_has_its_own_port_and_zero_turns_them_off() -> None:
    cfg = Settings(_env_file=None, metrics_port=9000)  # type: ignore[call-arg]
    assert [service_port(cfg, s) for s in ("scheduler", "extractor", "uploader", "notifier")] == [
        9000,
        9001,
        9002,
        9003,
    ]
    assert service_port(cfg.model_copy(update={"metrics_port": 0}), "scheduler") is None
    with pytest.raises(KeyError, match="unknown service 'mailer'"):
        service_port(cfg, "mailer")
