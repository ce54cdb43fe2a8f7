"""The push report as one self-contained HTML page: inline CSS and SVG, one inline self-check script."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from html import escape
from statistics import median

from otn_push.report import svg
from otn_push.report.data import STAGES, TYPE_NAMES, ReportData
from shared.db import JOB_STATES

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.meta { color: #555; } .figures { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 90px; }
.figure b { display: block; font-size: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; } tr.failed td { color: #b00; }
svg.plot { display: block; max-width: 100%; height: auto; margin: 6px 0 12px; }
"""

# Marks the page for automated checks (and a person with devtools): how many plots drew, and errors.
SELF_CHECK = """
<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var original = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var plots = Array.prototype.slice.call(document.querySelectorAll("svg.plot"));
    var drawn = plots.filter(function (p) {
      var box = p.getBBox();
      return box.width > 0 && box.height > 0 && p.querySelector(".mark, .empty") !== null;
    });
    document.body.setAttribute("data-plots", String(plots.length));
    document.body.setAttribute("data-plots-drawn", String(drawn.length));
    document.body.setAttribute("data-errors", String(errors.length));
  });
})();
</script>
"""


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.1f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    if value < 2 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} days"


def _counts(data: ReportData) -> list[tuple[str, int]]:
    """Extract counts per push as the issue names them: listed, created, uploaded, notified, completed."""
    e = data.extracts
    return [
        ("listed", len(e)),
        ("created", sum(1 for x in e if x.extracted_at)),
        ("uploaded", sum(1 for x in e if x.uploaded_at)),
        ("notified", sum(1 for x in e if x.notified_at)),
        ("completed", sum(1 for x in e if x.state == "completed")),
        ("failed", sum(1 for x in e if x.state == "failed")),
    ]


def _stage_items(data: ReportData) -> list[tuple[str, float]]:
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for e in data.extracts:
        for stage, seconds in e.stage_seconds().items():
            per_stage[stage].append(seconds)
    items = []
    for stage in STAGES:
        if per_stage[stage]:
            items.append((f"{stage} median", median(per_stage[stage])))
            items.append((f"{stage} max", max(per_stage[stage])))
    return items


def _timeline(data: ReportData) -> str:
    milestones: list[tuple[str, dt.datetime]] = []
    if data.started_at:
        milestones.append(("push started", data.started_at))
    created = sorted(e.extracted_at for e in data.extracts if e.extracted_at)
    uploaded = sorted(e.uploaded_at for e in data.extracts if e.uploaded_at)
    sent = sorted(t for _, _, t in data.emails if t)
    if created:
        milestones.append(("first extract", created[0]))
    if uploaded:
        milestones.append(("last upload", uploaded[-1]))
    if sent:
        milestones += [("first email", sent[0]), ("last email", sent[-1])]
    done = [e.completed_at for e in data.extracts if e.completed_at]
    return svg.timeline(
        "timeline",
        "The push from its cut-off to the last email",
        data.cutoff,
        data.started_at,
        milestones,
        done,
        "extracts completed",
    )


def _node_section(data: ReportData) -> str:
    parts = []
    for node in data.nodes:
        parts.append(f"<h3>{escape(node.node)}</h3>")
        if not node.reachable:
            parts.append(f'<p class="failed">unreachable: {escape(node.error or "")}</p>')
            continue
        figures = [
            ("projects", node.projects),
            ("tags", node.tags),
            ("detections", node.detections),
            ("new in this push", node.new_detections),
        ]
        parts.append(
            '<div class="figures">'
            + "".join(f'<div class="figure"><b>{v:,}</b>{escape(k)}</div>' for k, v in figures)
            + "</div>"
        )
        years = sorted({y for counts in node.unqualified.values() for y in counts})
        parts.append(
            svg.heatmap(
                f"unqualified-{node.node}",
                f"{node.node}: unqualified detections of the top {len(node.unqualified)} projects by year",
                list(node.unqualified),
                years,
                node.unqualified,
            )
        )
    return "".join(parts)


def _extracts_table(data: ReportData) -> str:
    head = "".join(
        f"<th>{c}</th>" for c in ("extract", "node", "state", "rows", "files", "size", "recipients")
    )
    rows = []
    for e in data.extracts:
        files = "<br>".join(escape(str(f.get("name", "?"))) for f in e.files)
        size = _size(sum(int(f.get("size") or 0) for f in e.files)) if e.files else ""
        note = f"<br><small>{escape(e.reason)}</small>" if e.reason else ""
        rows.append(
            f'<tr class="{escape(e.state)}"><td>{escape(e.extract)}</td><td>{escape(e.node or "")}</td>'
            f"<td>{escape(e.state)}{note}</td>"
            f'<td class="n">{"" if e.rows is None else f"{e.rows:,}"}</td><td>{files}</td>'
            f'<td class="n">{size}</td><td>{escape(", ".join(e.recipients))}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_report(data: ReportData) -> str:
    by_type = data.by_type_and_state()
    types = [t for t in TYPE_NAMES.values() if by_type.get(t)]
    rows = data.rows_per_project()
    sent = [t for _, _, t in data.emails if t]
    release = (
        f"{_seconds((max(sent) - data.cutoff).total_seconds())} from cut-off to the last email"
        if sent
        else ""
    )
    header = [
        f"state: {escape(data.run_state or 'not started')}",
        f"previous push {data.previous_push}" if data.previous_push else "",
        release,
        f"generated {data.generated_at.isoformat(timespec='seconds')}",
    ]
    recipients = Counter(project for project, _, _ in data.emails)
    # one email per project, to its PI and points of contact: the ledger holds one row per recipient
    figures = [*_counts(data), ("projects emailed", len(recipients)), ("recipients", len(data.emails))]
    body = [
        f"<h1>Push of {data.push_date}</h1>",
        f'<p class="meta">{" · ".join(escape(h) for h in header if h)}</p>',
        '<div class="figures">'
        + "".join(f'<div class="figure"><b>{v:,}</b>{escape(k)}</div>' for k, v in figures)
        + "</div>",
        "<h2>Extracts by type and state</h2>",
        svg.stacked_bars(
            "by-type-state",
            "Extracts by type and state",
            types,
            JOB_STATES,
            {t: dict(by_type[t]) for t in types},
            svg.STATE_COLOURS,
        ),
        "<h2>Rows per project</h2>",
        svg.hbars("rows-per-project", "Detection rows per project, largest first", rows[:40]),
        f"<p class='meta'>and {len(rows) - 40} more projects in the table below</p>"
        if len(rows) > 40
        else "",
        "<h2>Time per stage</h2>",
        svg.hbars(
            "time-per-stage",
            "Seconds per stage (median and max over extracts)",
            _stage_items(data),
            _seconds,
            svg.PALETTE[4],
        ),
        "<h2>Timeline</h2>",
        _timeline(data),
        "<h2>Nodes</h2>",
        _node_section(data),
        f"<h2>Every extract ({len(data.extracts)})</h2>",
        _extracts_table(data),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>otn-push report {data.push_date}</title><style>{CSS}</style>{SELF_CHECK}</head>"
        f"<body>{''.join(body)}</body></html>"
    )
