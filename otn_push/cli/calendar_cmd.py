"""`otn-push calendar [--year Y]`: push dates with their deadlines, and the next push."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from otn_push.cli.common import console, settings
from shared.calendar import PushCalendar


def register(app: typer.Typer) -> None:
    @app.command("calendar")
    def calendar(
        year: int | None = typer.Option(
            None, "--year", min=1900, max=9998, help="Year to show (default: this year and next)."
        ),
    ) -> None:
        """Push dates with submission deadline and end of support, and the next push.

        Dates are the configured ones (OTN_PUSH_PUSH_DATES), else OTN's published ones, else the third
        Thursday of February, June and October."""
        cfg = settings()
        cal = PushCalendar(cfg.push_dates)
        today = dt.date.today()
        years = [year] if year is not None else [today.year, today.year + 1]
        table = Table(title="OTN push calendar")
        for column in ("push date", "source", "submission deadline", "support stops"):
            table.add_column(column)
        for y in years:
            for push in cal.dates(y):
                style = "bold" if push.date >= today else "dim"
                table.add_row(
                    push.date.isoformat(),
                    push.source,
                    push.submission_deadline.isoformat(),
                    push.support_stop.isoformat(),
                    style=style,
                )
        console.print(table)
        upcoming = cal.next_push(today)
        days = (upcoming.date - today).days
        when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        console.print(
            f"next push: {upcoming.date.isoformat()} ({when}); submission deadline "
            f"{upcoming.submission_deadline.isoformat()}, support stops {upcoming.support_stop.isoformat()}"
        )
