"""The oldest-message age from management API documents shaped like RabbitMQ 3.10's (see queue_age)."""

from __future__ import annotations

from typing import Any

from otn_push.status.queue_age import (
    AT_LEAST,
    EXACT,
    arrival_bound,
    best,
    departure_bound,
    head_timestamp_age,
)

T0 = 1_800_000_000  # seconds; samples every 5 s from here


def series(values: list[int]) -> dict[str, Any]:
    """A `*_details` object: values[i] at T0 + 5 i (RabbitMQ sends them newest first)."""
    return {
        "samples": [
            {"sample": v, "timestamp": (T0 + 5 * i) * 1000} for i, v in reversed(list(enumerate(values)))
        ]
    }


def queue(lengths: list[int], **counters: list[int]) -> dict[str, Any]:
    stats: dict[str, Any] = {name: values[-1] for name, values in counters.items()}
    stats.update({f"{name}_details": series(values) for name, values in counters.items()})
    return {"messages": lengths[-1], "messages_details": series(lengths), "message_stats": stats}


NOW = T0 + 5 * 9  # the newest sample of ten


def test_a_classic_queue_reports_the_head_message_timestamp_exactly() -> None:
    reading = head_timestamp_age({"head_message_timestamp": T0}, now=T0 + 42)
    assert reading is not None and (reading.seconds, reading.basis) == (42, EXACT)
    assert head_timestamp_age({"messages": 3}, now=T0) is None  # quorum queues: nothing


def test_work_queue_age_is_the_oldest_unfinished_publish_one_interval_late() -> None:
    # three published at 10 s, 20 s, 30 s; the first one consumed at 40 s: the one of 20 s is the oldest
    doc = queue([0, 0, 1, 1, 2, 2, 3, 3, 2, 2], publish=[0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
    reading = arrival_bound(doc, increment=5)
    assert (reading.seconds, reading.basis) == (NOW - (T0 + 20 + 5), AT_LEAST)
    assert not reading.reaches_window_start


def test_out_of_order_departures_never_make_it_older_than_the_truth() -> None:
    # two consumers: the second message finished first, the first is still in hand (published at 10 s)
    doc = queue([0, 0, 1, 2, 2, 1, 1, 1, 1, 1], publish=[0, 0, 1, 2, 2, 2, 2, 2, 2, 2])
    reading = arrival_bound(doc, increment=5)
    assert reading.seconds is not None and reading.seconds <= NOW - (T0 + 10)


def test_messages_older_than_the_history_or_the_statistics() -> None:
    old = queue([4] * 10, publish=[4] * 10)  # all four published before the window
    reading = arrival_bound(old, increment=5)
    assert reading.reaches_window_start and reading.seconds == NOW - (T0 + 5)
    restarted = queue([2] * 10)  # the broker restarted: its statistics never saw these publishes
    reading = arrival_bound(restarted, increment=5)
    assert reading.seconds is None and reading.note and "restarted" in reading.note
    fresh = queue([0] * 9 + [0], publish=[0] * 9 + [1])
    fresh["messages"] = 1  # arrived after the newest length sample
    assert arrival_bound(fresh, increment=5).seconds == 0.0
    assert arrival_bound(queue([0] * 10, publish=[1] * 10), increment=5).seconds is None  # empty


def test_dead_letter_age_counts_from_when_the_queue_last_lost_a_message() -> None:
    # letters arrive at 10 s and 30 s (RabbitMQ's own dead-lettering: no publish counted)
    doc = queue([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    assert departure_bound(doc, increment=5).seconds == NOW - (T0 + 10 + 5)
    # one replayed (acknowledged) at 35 s: the other may be the newer one, so count from there
    replayed = queue([0, 0, 1, 1, 1, 1, 2, 1, 1, 1], ack=[0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    assert departure_bound(replayed, increment=5).seconds == NOW - (T0 + 35 + 5)
    # an acknowledgement the newest sample does not show yet: nothing can be said beyond "now"
    lagging = queue([1] * 10, ack=[0] * 10)
    lagging["message_stats"]["ack"] = 1
    assert departure_bound(lagging, increment=5).seconds == 0.0
    # counts without their history: unknown, with the reason
    blind = {"messages": 1, "messages_details": series([1] * 10), "message_stats": {"ack": 3}}
    reading = departure_bound(blind, increment=5)
    assert reading.seconds is None and reading.note


def test_the_longer_history_wins_when_it_reaches_further() -> None:
    recent = departure_bound(queue([1] * 10), increment=5)
    assert recent.reaches_window_start  # the letter was there all ten samples: look further back
    hour = [{"sample": 1, "timestamp": (NOW - 60 * i) * 1000} for i in range(61)]
    longer = departure_bound({"messages": 1, "messages_details": {"samples": hour}}, increment=60)
    assert longer.seconds == 3600 - 60
    assert best([recent, longer]) == longer
    unknown = departure_bound({"messages": 1}, increment=5)
    assert best([unknown]) == unknown and unknown.note
