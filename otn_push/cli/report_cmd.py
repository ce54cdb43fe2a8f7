"""`otn-push report --push-date D --out FILE.html`: the push report as one self-contained page."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import typer

from otn_push.cli.common import console, fail, missing_folders, remove_empty, run, settings
from otn_push.cli.list_cmd import parse_date
from otn_push.cli.own_db import own_tables_for_reading
from otn_push.report.data import read_report
from otn_push.report.output import write_atomically
from otn_push.report.page import render_report
from shared.db import make_sessionmaker
from shared.settings import Settings


async def write_report(cfg: Settings, push_date: dt.date, out: Path | None) -> int:
    """Write the report (atomically) to `out`, or to stdout when None; returns the number of extracts."""
    async with own_tables_for_reading(cfg) as engine:
        data = await read_report(
            make_sessionmaker(engine), cfg.nodes, push_date, cfg.push_dates, dt.datetime.now(dt.UTC)
        )
    if data.run_state is None:
        fail(
            f"no push run for {push_date} yet: nothing to report "
            f"(`otn-push push start --push-date {push_date}`)",
            4,
        )
    page = render_report(data)
    if out is None:
        sys.stdout.write(page)
        sys.stdout.flush()
        return len(data.extracts)
    try:
        write_atomically(out, page)
    except OSError as exc:
        fail(f"--out {out}: cannot write the report: {exc.strerror or exc}")
    return len(data.extracts)


def output_path(out: Path, day: dt.date) -> Path | None:
    """Where to write: None for `-` (stdout); a symlink's target (the link stays a link); refused when
    the path is a folder or anything but a regular file (a device, a pipe), which a rename would replace."""
    if str(out) == "-":
        return None
    target = out.resolve() if out.is_symlink() else out
    if target.is_dir():
        fail(f"--out {out}: is a folder; give a file name such as report-{day}.html")
    if target.exists() and not target.is_file():
        fail(f"--out {out}: not a regular file (a device, pipe or socket); give a file name, or - for stdout")
    return target


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        push_date: str = typer.Option(..., "--push-date", help="Push date (YYYY-MM-DD)."),
        out: Path = typer.Option(..., "--out", help="The HTML file to write (- for stdout)."),
    ) -> None:
        """One self-contained HTML page about a push: plots, node figures, every extract."""
        cfg = settings()
        day = parse_date(push_date)
        target = output_path(out, day)
        made = missing_folders(target.parent) if target is not None else []
        try:
            shown = run(write_report(cfg, day, target))
        except typer.Exit:
            remove_empty(made)
            raise
        if target is not None:
            console.print(f"report of the push of {day} ({shown} extracts): {out}", highlight=False)
            if made:  # a mistyped folder shows here rather than as a stray folder found later
                console.print(f"created the folder {made[-1]}", highlight=False)
