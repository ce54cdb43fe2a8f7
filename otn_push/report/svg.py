"""Small inline-SVG plots (no JavaScript, no external files): bars, stacked bars, a timeline, a heatmap.

Every data mark has class `mark`, every plot is `<svg class="plot" data-plot=NAME>`; a plot without data
draws a visible "nothing to show" note with class `empty` instead, so a check can tell an empty plot from
a broken one.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
STATE_COLOURS = {
    "listed": "#bab0ac",
    "extracting": "#4e79a7",
    "uploading": "#76b7b2",
    "notifying": "#b07aa1",
    "completed": "#59a14f",
    "failed": "#e15759",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(name: str, title: str, width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg class="plot" data-plot="{escape(name)}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" {FONT}>'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _empty(name: str, title: str, note: str = "nothing to show") -> str:
    return _svg(name, title, 400, 40, [f'<text class="empty" x="8" y="24" fill="#666">{escape(note)}</text>'])


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover


def number(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def hbars(
    name: str,
    title: str,
    items: Sequence[tuple[str, float]],
    fmt: Callable[[float], str] = number,
    colour: str = PALETTE[0],
    width: int = 760,
) -> str:
    """Horizontal bars, one per (label, value), in the given order."""
    if not items:
        return _empty(name, title)
    label_w, row_h, top = 150, 20, 6
    plot_w = width - label_w - 80
    top_value = _nice_max(max(v for _, v in items))
    body = []
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, plot_w * value / top_value) if value > 0 else 0.0
        body.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="mark" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{colour}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" fill="#333">{escape(fmt(value))}</text>'
        )
    return _svg(name, title, width, top * 2 + row_h * len(items), body)


def stacked_bars(
    name: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[str],
    values: dict[str, dict[str, float]],
    colours: dict[str, str] | None = None,
    width: int = 760,
) -> str:
    """Vertical bars per category, stacked by series, with a legend."""
    totals = [sum(values.get(c, {}).get(s, 0) for s in series) for c in categories]
    if not categories or not any(totals):
        return _empty(name, title)
    colours = colours or {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    height, left, bottom, top = 260, 50, 40, 30
    plot_h = height - bottom - top
    top_value = _nice_max(max(totals))
    slot = (width - left - 10) / len(categories)
    bar_w = min(60.0, slot * 0.6)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{number(top_value)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, category in enumerate(categories):
        x = left + slot * i + (slot - bar_w) / 2
        y = float(top + plot_h)
        for s in series:
            v = values.get(category, {}).get(s, 0)
            if v <= 0:
                continue
            h = plot_h * v / top_value
            y -= h
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colours[s]}"><title>{escape(category)} {escape(s)}: {number(v)}</title></rect>'
            )
        body.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(category)}</text>"
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" fill="#333">'
            f"{number(totals[i])}</text>"
        )
    x = float(left)
    for s in series:
        body.append(
            f'<rect x="{x:.0f}" y="6" width="10" height="10" fill="{colours[s]}"/>'
            f'<text x="{x + 14:.0f}" y="15">{escape(s)}</text>'
        )
        x += 24 + 7 * len(s)
    return _svg(name, title, width, height, body)


def timeline(
    name: str,
    title: str,
    cutoff: dt.datetime,
    started: dt.datetime | None,
    milestones: Sequence[tuple[str, dt.datetime]],
    steps: Sequence[dt.datetime],
    step_label: str,
    width: int = 760,
) -> str:
    """Milestones from the cut-off on a broken time axis, and a cumulative count of `steps`.

    The first fifth of the axis is the wait from the cut-off to the push's start (often days), the rest
    the push itself (often minutes), each linear, so that both stay readable.
    """
    moments = [t for _, t in milestones] + list(steps)
    if not moments:
        return _empty(name, title)
    origin = max(started or cutoff, cutoff)
    end = max([*moments, origin + dt.timedelta(seconds=1)])
    left, right, height = 20, 30, 250
    axis_y, curve_top = 200, 110
    span = width - left - right
    gap = 0.2 * span if origin > cutoff else 0.0
    wait = max(1.0, (origin - cutoff).total_seconds())
    run = max(1.0, (end - origin).total_seconds())

    def x_of(t: dt.datetime) -> float:
        if t <= origin:
            return left + gap * max(0.0, (t - cutoff).total_seconds()) / wait
        return left + gap + (span - gap) * min(1.0, (t - origin).total_seconds() / run)

    body = [f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#999"/>']
    ticks = [("cut-off", cutoff)] if gap else []
    ticks += [
        (("start" if f == 0 else "+" + _since(run * f)), origin + dt.timedelta(seconds=run * f))
        for f in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    if gap:
        body.append(
            f'<text x="{left + gap / 2:.1f}" y="{axis_y - 6}" text-anchor="middle" font-size="10" '
            'fill="#666">'
            f"{escape(_since(wait))} wait</text>"
            f'<line x1="{left + gap:.1f}" y1="{axis_y - 4}" x2="{left + gap:.1f}" y2="{axis_y + 4}" '
            'stroke="#333" stroke-width="2"/>'
        )
    for label, t in ticks:
        x = x_of(t)
        body.append(
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#999"/>'
            f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="10">{escape(label)}</text>'
        )
    for i, (label, t) in enumerate(milestones):
        x = x_of(t)
        label_y = 14 + (i % 5) * 16
        body.append(
            f'<line x1="{x:.1f}" y1="{label_y + 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#bbb" '
            'stroke-dasharray="3,3"/>'
            f'<circle class="mark" cx="{x:.1f}" cy="{axis_y}" r="4" fill="{PALETTE[1]}">'
            f"<title>{escape(label)}: {t.isoformat(timespec='seconds')}</title></circle>"
            f'<text x="{min(x + 3, width - 190):.1f}" y="{label_y}">{escape(label)} '
            f"({escape(_after(t, cutoff, origin))})</text>"
        )
    if steps:
        ordered = sorted(steps)
        points = [f"{x_of(ordered[0]):.1f},{axis_y}"]
        for n, t in enumerate(ordered, start=1):
            y = axis_y - (axis_y - curve_top) * n / len(ordered)
            points.append(f"{x_of(t):.1f},{y:.1f}")
        body.append(
            f'<polyline class="mark" points="{" ".join(points)}" fill="none" stroke="{PALETTE[2]}" '
            f'stroke-width="2"><title>{escape(step_label)}: {len(ordered)}</title></polyline>'
            f'<text x="{width - right}" y="{curve_top - 6}" text-anchor="end" fill="{PALETTE[2]}">'
            f"{escape(step_label)}: {len(ordered)}</text>"
        )
    return _svg(name, title, width, height, body)


def _after(t: dt.datetime, cutoff: dt.datetime, origin: dt.datetime) -> str:
    if t > origin:
        return f"start +{_since((t - origin).total_seconds())}"
    return f"cut-off +{_since((t - cutoff).total_seconds())}"


def _since(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 600:
        return f"{seconds / 60:.1f}m"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def heatmap(
    name: str, title: str, rows: Sequence[str], columns: Sequence[int], values: dict[str, dict[int, int]]
) -> str:
    """Counts by row and column as coloured cells (darker = more), with the count in each cell."""
    if not rows or not columns:
        return _empty(name, title)
    label_w, cell_w, cell_h, top = 110, 52, 20, 22
    width = label_w + cell_w * len(columns) + 10
    peak = max((v for r in rows for v in values.get(r, {}).values()), default=0) or 1
    body = [
        f'<text x="{label_w + cell_w * j + cell_w / 2:.0f}" y="15" text-anchor="middle">{c}</text>'
        for j, c in enumerate(columns)
    ]
    for i, row in enumerate(rows):
        y = top + i * cell_h
        body.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(row)}</text>')
        for j, column in enumerate(columns):
            v = values.get(row, {}).get(column, 0)
            shade = 0.08 + 0.92 * math.sqrt(v / peak) if v else 0.0
            x = label_w + cell_w * j
            body.append(
                f'<rect class="mark" x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{PALETTE[0]}" fill-opacity="{shade:.2f}" stroke="#eee">'
                f"<title>{escape(row)} {column}: {v:,}</title></rect>"
            )
            if v:
                colour = "#fff" if shade > 0.55 else "#222"
                body.append(
                    f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + 14}" text-anchor="middle" font-size="10" '
                    f'fill="{colour}">{number(v)}</text>'
                )
    return _svg(name, title, width, top + cell_h * len(rows) + 6, body)
