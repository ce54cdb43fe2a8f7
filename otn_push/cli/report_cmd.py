"""`otn-push report --push-date D --out FILE.html`: the push report as one self-contained page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from otn_push.cli.common import console, fail, run, settings
from otn_push.cli.list_cmd import parse_date
from otn_push.report.data import read_report
from otn_push.report.page import render_report
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings


async def write_report(cfg: Settings, push_date: dt.date, out: Path) -> int:
    """Write the report (atomically); returns the number of extracts it shows."""
    engine = make_engine(cfg.own_database_url)
    try:
        data = await read_report(
            make_sessionmaker(engine), cfg.nodes, push_date, cfg.push_dates, dt.datetime.now(dt.UTC)
        )
    finally:
        await engine.dispose()
    page = render_report(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out)
    return len(data.extracts)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD)."),
        out: Path = typer.Option(..., "--out", help="The HTML file to write."),
    ) -> None:
        """One self-contained HTML page about a push: plots, node figures, every extract."""
        cfg = settings()
        day = parse_date(push_date)
        if out.is_dir():
            fail(f"--out {out}: is a folder; give a file name such as report-{day}.html")
        try:
            shown = run(write_report(cfg, day, out))
        except OSError as exc:
            fail(f"cannot write the report to {out}: {exc}")
        console.print(f"report of the push of {day} ({shown} extracts): {out}", highlight=False)
