"""`otn-push extract CODE YEAR TYPE --out DIR [--format 2025|legacy]`: one extract, without the broker."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from otn_push.cli.common import console, extract_format, fail, missing_folders, remove_empty, run, settings
from services.extractor.engine import ExtractInputError, build_extract
from shared.nodes import NodeUnavailable


def register(app: typer.Typer) -> None:
    @app.command("extract")
    def extract(
        code: str = typer.Argument(..., help="Project code, e.g. NSBS or OTN.NSBS."),
        year: int = typer.Argument(..., help="Calendar year of the detections."),
        type_code: str = typer.Argument(
            ..., metavar="TYPE", help="t matched, q qualified, u unqualified, s sentinel."
        ),
        out: Path = typer.Option(..., "--out", help="Directory for the .zip and .parquet."),
        fmt: str | None = typer.Option(
            None, "--format", help="2025 or legacy (default: OTN_PUSH_EXTRACT_FORMAT, else 2025)."
        ),
    ) -> None:
        """Build one detection extract (CSV in zip + Parquet) from every configured node database."""
        cfg = settings()
        layout = extract_format(fmt, cfg)
        if out.exists() and not out.is_dir():
            fail(f"--out {out}: is a file, not a folder; give the folder for the .zip and .parquet")
        made = missing_folders(out)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a transient bar still leaves a blank line in a pipe
        ) as bar:
            task = bar.add_task(f"building {code} {year} {type_code}", total=None)

            def progress(rows: int) -> None:
                bar.update(task, description=f"building {code} {year} {type_code}: {rows:,} rows")

            try:
                result = run(
                    build_extract(cfg.nodes, code, year, type_code, out, fmt=layout, progress=progress)
                )
            except (ExtractInputError, NodeUnavailable) as exc:  # NodeUnavailable is an OSError too
                remove_empty(made)
                fail(str(exc))
            except OSError as exc:
                remove_empty(made)
                fail(f"--out {out}: {exc.strerror or exc}")
        console.print(
            f"{result.basename}: {result.rows:,} rows (node {result.node}, format {result.format})",
            soft_wrap=True,
        )
        for f in result.files:
            console.print(f"  {f.path}  {f.size:,} bytes  sha256 {f.sha256}", soft_wrap=True)
        for project, rows in sorted(result.summary.items()):
            console.print(f"  {project}: {rows:,} rows")
        for warning in result.warnings:
            console.print(f"  [yellow]warning:[/] {warning}", soft_wrap=True)
        if result.timings:
            console.print(
                "  seconds: " + ", ".join(f"{phase} {secs:.3f}" for phase, secs in result.timings.items())
            )
