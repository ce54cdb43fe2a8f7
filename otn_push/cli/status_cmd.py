"""`otn-push status`: queues, the push, node databases and the outbox on one screen; exit 1 if flagged."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from otn_push.cli.common import console, run, settings
from otn_push.cli.list_cmd import parse_date
from otn_push.status.nodecheck import NodeCheck
from otn_push.status.queue_age import AT_LEAST
from otn_push.status.queues import DEAD, QueueStat
from otn_push.status.snapshot import Snapshot, take_snapshot
from shared.db import JOB_STATES


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _num(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def age_cell(q: QueueStat) -> str:
    # "≥": a lower bound (quorum queues); "—": unknown, the reason is in the notes; blank: empty queue
    if q.oldest_age is not None:
        return ("≥ " if q.age_basis == AT_LEAST else "") + duration(q.oldest_age)
    return "" if q.empty else "—"


def queues_table(snap: Snapshot) -> Table:
    table = Table(title="queues", title_justify="left", show_edge=False)
    for column in ("queue", "kind", "ready", "unacked", "consumers", "oldest"):
        table.add_column(column, justify="left" if column in ("queue", "kind") else "right")
    for q in snap.queues:
        style = ""
        if not q.exists:
            table.add_row(q.name, q.kind, "missing", "", "", "", style="dim")
            continue
        if (q.kind == DEAD and (q.ready or 0) > 0) or (
            q.kind == "work" and (q.ready or 0) and not q.consumers
        ):
            style = "red"
        table.add_row(
            q.name,
            q.kind,
            _num(q.ready),
            _num(q.unacked),
            _num(q.consumers),
            age_cell(q),
            style=style,
        )
    return table


def push_view(snap: Snapshot) -> RenderableType:
    push = snap.push
    if push is None:
        return Text("push: none", style="dim")
    head = Text.assemble(
        ("push ", ""),
        (push.push_date, "bold"),
        f": {push.state}, {push.total} extract(s), {duration(push.since_cutoff)} since cut-off",
        f", finished {push.finished_at[:19]}" if push.finished_at else "",
    )
    states = Table(show_edge=False, title_justify="left")
    states.add_column("")
    for state in JOB_STATES:
        states.add_column(state, justify="right")
    totals = [push.by_state[s] for s in JOB_STATES]
    states.add_row("jobs", *(f"{t.jobs:,}" for t in totals))
    states.add_row("rows", *(f"{t.rows:,}" for t in totals))
    states.add_row("bytes", *(size(t.bytes) for t in totals))
    parts: list[RenderableType] = [head, states]
    if push.slowest:
        slow = Table(title="slowest", title_justify="left", show_edge=False)
        for column in ("extract", "node", "state", "time"):
            slow.add_column(column)
        for line in push.slowest:
            slow.add_row(escape(line.extract), escape(line.node or ""), line.state, duration(line.seconds))
        parts.append(slow)
    for line in push.failed:
        parts.append(
            Text.assemble(("failed ", "red"), f"{line.extract}: {line.reason or 'no reason recorded'}")
        )
    return Group(*parts)


def nodes_table(checks: list[NodeCheck]) -> Table:
    table = Table(title="node databases", title_justify="left", show_edge=False)
    problems = any(c.error for c in checks)
    for column in ("node", "reachable", "latency", "version", "database", *(["problem"] if problems else [])):
        table.add_column(column)
    for c in checks:
        latency = "–" if c.latency is None else f"{c.latency * 1000:.0f} ms"
        problem = [escape(c.error or "")] if problems else []
        table.add_row(
            c.node,
            "yes" if c.reachable else "NO",
            latency,
            c.version or "–",
            escape(c.url),
            *problem,
            style="" if c.reachable else "red",
        )
    return table


def render(snap: Snapshot) -> RenderableType:
    parts: list[RenderableType] = [Text(f"otn-push status at {snap.taken_at}", style="bold")]
    if snap.queues:
        parts.append(queues_table(snap))
    parts.append(push_view(snap))
    parts.append(nodes_table(snap.nodes))
    if snap.outbox is not None:
        oldest = f", oldest {duration(snap.outbox.oldest_age)}" if snap.outbox.oldest_age is not None else ""
        parts.append(Text(f"outbox: {snap.outbox.pending} unpublished event(s){oldest}"))
    for note in snap.notes:
        parts.append(Text(note, style="dim"))
    if snap.flags:
        parts += [Text.assemble(("FLAG ", "bold red"), flag) for flag in snap.flags]
    else:
        parts.append(Text("nothing flagged", style="green"))
    return Group(*parts)


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        push_date: str | None = typer.Option(
            None, "--push-date", help="Push date (YYYY-MM-DD); default: the latest push run."
        ),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
        watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C."),
        interval: float = typer.Option(
            2.0, "--interval", min=0.2, help="With --watch: seconds between reads."
        ),
    ) -> None:
        """Queues, the push, node databases and the outbox; exit code 1 when anything is flagged.

        Thresholds: OTN_PUSH_STATUS_MAX_* settings."""
        cfg = settings()
        day = parse_date(push_date) if push_date is not None else None
        if not watch:
            snap = run(take_snapshot(cfg, day))
            if as_json:
                typer.echo(json.dumps(snap.as_dict(), indent=2))
            else:
                console.print(render(snap), highlight=False)
            raise typer.Exit(1 if snap.flags else 0)

        async def stream() -> Snapshot:
            # not a terminal (a pipe, tee, a log file): one whole snapshot per read, flushed, instead of
            # a live display that only draws on a terminal; with --json one JSON document per line
            while True:
                snap = await take_snapshot(cfg, day)
                if as_json:
                    typer.echo(json.dumps(snap.as_dict()))
                else:
                    console.print(render(snap), highlight=False)
                    console.print("")
                console.file.flush()
                await asyncio.sleep(interval)

        async def follow() -> Snapshot:
            if as_json or not console.is_terminal:
                return await stream()
            snap = await take_snapshot(cfg, day)
            with Live(render(snap), console=console, refresh_per_second=4) as live:
                try:
                    while True:
                        await asyncio.sleep(interval)
                        snap = await take_snapshot(cfg, day)
                        live.update(render(snap))
                except asyncio.CancelledError:
                    pass
            return snap

        try:
            last = run(follow())
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        raise typer.Exit(1 if last.flags else 0)
