"""The report's SVG plots: marks for data, a visible note for no data, values in the marks' titles."""

from __future__ import annotations

import datetime as dt
import re

from otn_push.report import svg


def test_bars_keep_order_and_scale_to_the_largest() -> None:
    out = svg.hbars("p", "t", [("B", 50.0), ("A", 100.0), ("C", 0.0)])
    assert re.findall(r"<title>(\w): ([\d,]+)</title>", out) == [("B", "50"), ("A", "100"), ("C", "0")]
    widths = [float(w) for w in re.findall(r'class="mark"[^>]* width="([\d.]+)"', out)]
    assert widths[0] * 2 == widths[1] and widths[2] == 0


def test_no_data_draws_a_note_not_an_empty_box() -> None:
    for out in (
        svg.hbars("p", "t", []),
        svg.stacked_bars("p", "t", ["a"], ["x"], {"a": {"x": 0}}),
        svg.heatmap("p", "t", [], [], {}),
        svg.timeline("p", "t", dt.datetime(2025, 6, 12, tzinfo=dt.UTC), None, [], [], "done"),
    ):
        assert 'class="empty"' in out and 'class="mark"' not in out


def test_timeline_breaks_the_axis_between_cut_off_and_start() -> None:
    cutoff = dt.datetime(2025, 6, 12, tzinfo=dt.UTC)
    start = cutoff + dt.timedelta(days=30)
    out = svg.timeline(
        "p",
        "t",
        cutoff,
        start,
        [("push started", start)],
        [start + dt.timedelta(minutes=m) for m in (1, 2)],
        "done",
    )
    assert "30.0d wait" in out and "push started (cut-off +30.0d)" in out and "done: 2" in out
    xs = [float(x) for x in re.findall(r'<circle class="mark" cx="([\d.]+)"', out)]
    assert xs == [20 + 0.2 * (760 - 50)]  # the start sits at the break, a fifth along the axis
