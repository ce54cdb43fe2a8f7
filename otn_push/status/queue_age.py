"""How long the oldest message has been in a queue, from RabbitMQ's management API, without touching it.

RabbitMQ reports `head_message_timestamp` only for classic queues (from the message's AMQP `timestamp`,
which every otn-push publish carries); for quorum queues — all of ours — 3.10 reports nothing. Taking
the head message (basic.get + requeue) would count toward the delivery limit, so instead the age is a
LOWER BOUND read from the management API's history of the queue (samples every few seconds, kept for
an hour by default):

- work and watch queues (`arrival_bound`): every message enters them by a publish, which the queue's
  `publish` counter counts. With P messages ever published and M in the queue now, the oldest one still
  there was published no later than the (P - M + 1)th: that publish's time is found in the counter's
  history. Whatever order messages leave in (several consumers, redeliveries, dead-lettering) the true
  oldest is at least that old; exact when they leave in order.
- dead-letter queues (`departure_bound`): RabbitMQ's own dead-lettering does not count as a publish, but
  messages only leave a DLQ by being acknowledged (a replay). If the queue held messages at time t and
  none was acknowledged since, those are still there: the oldest is at least now - t old.

Both are measured at the newest sample, and each start is taken one sample interval late: RabbitMQ
labels a sample with the end of its interval, so the figure is never larger than the truth. What the
figure means is said in `AgeReading.basis`; where it cannot be known, `AgeReading.note` says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EXACT = "exact"  # head_message_timestamp
AT_LEAST = "at least"  # a lower bound from the history

# message_stats counters of messages that left a queue for good
DEPARTURES = ("ack", "get_no_ack", "deliver_no_ack")


@dataclass(frozen=True)
class AgeReading:
    seconds: float | None
    basis: str | None = None  # EXACT | AT_LEAST, None when unknown
    note: str | None = None  # why it is unknown, or what limits it
    reaches_window_start: bool = False  # the bound stopped at the oldest sample: a longer window may add


Samples = list[tuple[float, float]]  # (seconds since the epoch, value), oldest first


def samples(details: Any) -> Samples:
    """A management `*_details` object's samples, oldest first, in seconds."""
    raw = details.get("samples") if isinstance(details, Mapping) else None
    if not isinstance(raw, list):
        return []
    found = [
        (float(s["timestamp"]) / 1000.0, float(s["sample"]))
        for s in raw
        if isinstance(s, Mapping)
        and isinstance(s.get("timestamp"), int | float)
        and isinstance(s.get("sample"), int | float)
    ]
    return sorted(found)


def head_timestamp_age(doc: Mapping[str, Any], now: float) -> AgeReading | None:
    head = doc.get("head_message_timestamp")
    if isinstance(head, int | float) and not isinstance(head, bool):
        return AgeReading(max(0.0, now - float(head)), EXACT)
    return None


def _stats(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    stats = doc.get("message_stats")
    return stats if isinstance(stats, Mapping) else {}


def _bound(start: float, increment: float, now: float, window_start: bool) -> AgeReading:
    return AgeReading(max(0.0, now - (start + increment)), AT_LEAST, reaches_window_start=window_start)


def _lengths(doc: Mapping[str, Any]) -> Samples:
    return samples(doc.get("messages_details"))


def arrival_bound(doc: Mapping[str, Any], increment: float) -> AgeReading:
    """Lower bound for a queue every message enters by a counted publish (see the module doc).

    Measured at the newest length sample (its time and count go together), not at this moment:
    statistics a few seconds stale must not credit a message that has since left with more age.
    """
    lengths = _lengths(doc)
    if int(doc.get("messages") or 0) <= 0:
        return AgeReading(None)
    if not lengths:
        return AgeReading(None, note="age unknown: no queue length history in the broker's statistics")
    now, held = lengths[-1][0], int(lengths[-1][1])
    if held <= 0:
        return AgeReading(0.0, AT_LEAST)  # arrived after the newest sample
    stats = _stats(doc)
    published = int(stats.get("publish") or 0)
    history = samples(stats.get("publish_details"))
    if published <= 0 or not history:
        return AgeReading(
            None, note="age unknown: the broker's statistics hold no publish of these messages (restarted?)"
        )
    # the (P - M + 1)th publish; at most 1: messages older than the statistics predate the first one
    target = max(published - held + 1, 1)
    for index, (when, count) in enumerate(history):
        if count >= target:
            return _bound(when, increment, now, index == 0)
    return AgeReading(0.0, AT_LEAST)  # published after the newest sample


def departure_bound(doc: Mapping[str, Any], increment: float) -> AgeReading:
    """Lower bound for a queue messages leave only by acknowledgement (see the module doc)."""
    lengths = _lengths(doc)
    if int(doc.get("messages") or 0) <= 0:
        return AgeReading(None)
    if not lengths:
        return AgeReading(None, note="age unknown: no queue length history in the broker's statistics")
    now = lengths[-1][0]
    stats = _stats(doc)
    left_now = sum(int(stats.get(name) or 0) for name in DEPARTURES)
    left_at: dict[float, float] = {}
    for name in DEPARTURES:
        for when, count in samples(stats.get(f"{name}_details")):
            left_at[when] = left_at.get(when, 0.0) + count
    if left_now and not left_at:
        return AgeReading(None, note="age unknown: no acknowledgement history in the broker's statistics")
    start: float | None = None
    reached_first = False
    # walk back from the newest sample while the queue held messages and none had left since
    for index in range(len(lengths) - 1, -1, -1):
        when, length = lengths[index]
        if length < 1 or (left_now and left_at.get(when) != left_now):
            break
        start, reached_first = when, index == 0
    if start is None:
        return AgeReading(0.0, AT_LEAST)  # filled (or emptied) after the newest sample
    return _bound(start, increment, now, reached_first)


def best(readings: Sequence[AgeReading]) -> AgeReading:
    """The largest known bound (each is a true lower bound), else the first reading's reason."""
    known = [r for r in readings if r.seconds is not None]
    if not known:
        return readings[0]
    return max(known, key=lambda r: r.seconds or 0.0)
