"""`otn-push list add|show`: the push's extract list in the home node (`obis.detection_extracts_list`)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import typer
from rich.markup import escape
from rich.table import Table

from otn_push.cli.common import console, err_console, fail, run, settings
from otn_push.cli.own_db import run_state
from shared.calendar import PushCalendar
from shared.extract_list import ExtractListError, add_rows, known_projects, list_records, parse_extract
from shared.nodes import NodeUnavailable, connection
from shared.redact import redact_url
from shared.settings import Settings


def parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _is_web_link(text: str) -> bool:
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and " " not in text.strip()


def no_schema(cfg: Settings) -> str:
    return (
        f"home node {cfg.home_node} ({redact_url(cfg.home_url)}) has no extract list table "
        "(obis.detection_extracts_list): run `otn-push nodes init` on it, or check OTN_PUSH_HOME_NODE"
    )


def register(app: typer.Typer) -> None:
    lists = typer.Typer(help="The extract list of a push (rows of obis.detection_extracts_list).")
    app.add_typer(lists, name="list")

    @lists.command("add")
    def add(
        entries: list[str] = typer.Argument(
            ..., metavar="EXTRACT...", help="Extracts as CODE,YEAR,TYPE (e.g. NSBS,2022,t)."
        ),
        push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD)."),
        issue_link: str | None = typer.Option(None, "--issue-link", help="Ticket whose data changed these."),
        force: bool = typer.Option(False, "--force", help="Add them even if the date is not a push date."),
    ) -> None:
        """Add rows to a push's extract list (in OTN the matching step does this).

        Every entry is checked first: one bad entry adds nothing. A date that is not a push date (see
        `otn-push calendar`) is refused unless --force: no push would ever select those rows."""
        if issue_link is not None and not _is_web_link(issue_link):
            fail(f"--issue-link {issue_link!r}: expected the ticket's http:// or https:// address")
        cfg = settings()
        day = parse_date(push_date)
        off_calendar = PushCalendar(cfg.push_dates).not_a_push_date(day)
        if off_calendar is not None:
            if not force:
                fail(f"--push-date {off_calendar}: nothing added (--force adds them anyway)")
            err_console.print(f"[yellow]warning:[/] --push-date {escape(off_calendar)}", highlight=False)
        labels: list[str] = []
        prefixes: dict[str, tuple[str, str]] = {}  # code -> (node prefix, the entry as typed)
        errors: list[str] = []
        noted: list[str] = []  # normalisations, said once every entry is known to be added
        for entry in entries:
            try:
                parsed = parse_extract(entry, max_year=day.year)
            except ExtractListError as exc:
                errors.append(str(exc))
                continue
            labels.append(parsed.key.label)
            if parsed.node_prefix is not None:
                prefixes[parsed.key.code] = (parsed.node_prefix, entry)
            noted += [f"{entry!r}: {note} -> {parsed.key.label}" for note in parsed.notes]
        if errors:
            fail("; ".join(errors) + " (nothing added)")

        async def go() -> list[int]:
            projects = await known_projects(cfg.nodes)
            unknown = sorted({label.split(",")[0] for label in labels} - set(projects))
            if unknown:
                fail(f"unknown project(s) {', '.join(unknown)}: in no node's project table (nothing added)")
            # only the project's own node may prefix it: the scheduler would refuse the row otherwise
            wrong = [
                f"{entry!r}: prefix {prefix} but project {code} is on node {projects[code]}"
                for code, (prefix, entry) in prefixes.items()
                if prefix != projects[code].upper()
            ]
            if wrong:
                fail("; ".join(wrong) + " (nothing added)")
            for note in noted:
                console.print(escape(note), highlight=False)
            async with connection(cfg.home_node, cfg.home_url) as conn:
                return await add_rows(conn, day, labels, issue_link)

        try:
            ids = run(go())
        except NodeUnavailable as exc:
            fail(str(exc))
        except asyncpg.UndefinedTableError:
            fail(no_schema(cfg) + " (nothing added)")
        console.print(f"added {len(ids)} row(s) to the {day} list of node {cfg.home_node}")
        state = run(run_state(cfg, day))
        if state is not None and state != "running":
            # the scheduler only starts a push once by itself: say how these rows get built
            console.print(
                f"push {day} already ran ({state}): `otn-push push start --push-date {day}` builds "
                "these rows (extracts already made in it are built again)",
                highlight=False,
            )

    @lists.command("show")
    def show(push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD).")) -> None:
        """The list rows of a push with their completion."""
        cfg = settings()
        day = parse_date(push_date)

        async def go() -> list[Any]:
            async with connection(cfg.home_node, cfg.home_url) as conn:
                return await list_records(conn, day)

        try:
            records = run(go())
        except NodeUnavailable as exc:
            fail(str(exc))
        except asyncpg.UndefinedTableError:
            fail(no_schema(cfg))
        table = Table(title=f"extract list {day} (node {cfg.home_node})")
        for column in ("id", "extract", "issue", "added", "completed"):
            table.add_column(column)
        for r in records:
            done = (
                r["completed_at"].strftime("%Y-%m-%d %H:%M") if r["completed"] and r["completed_at"] else ""
            )
            table.add_row(
                str(r["id"]),
                escape(r["detection_extract"]),
                escape(r["git_issue_link"] or ""),
                r["date_added"].strftime("%Y-%m-%d %H:%M"),
                f"yes {done}".strip() if r["completed"] else "no",
            )
        console.print(table)
        completed = sum(1 for r in records if r["completed"])
        console.print(f"{len(records)} row(s), {completed} completed")
