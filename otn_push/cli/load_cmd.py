"""`otn-push load [--node NAME] FILE...`: OTN extract files into the node databases."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from otn_push.cli.common import console, err_console, fail, run, settings
from otn_push.load import LoadError, parse_file
from otn_push.load.writer import write_collected
from shared.nodes import NodeUnavailable


def register(app: typer.Typer) -> None:
    @app.command("load")
    def load(
        files: list[Path] = typer.Argument(
            ..., help="Extract files: .zip (one CSV) or .csv, 2025 or legacy."
        ),
        node: str | None = typer.Option(
            None, "--node", help="Node for project codes without a prefix (legacy files), e.g. ACT."
        ),
    ) -> None:
        """Load OTN detection extracts (matched or qualified) into the node databases; loading twice
        changes nothing. A bad file is refused whole (nothing of it is written), the others still load;
        the exit code is 1 when any file was refused."""
        cfg = settings()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
            console=console, transient=True, disable=not console.is_terminal,
        ) as bar:  # fmt: skip
            parsed = []
            refused: list[str] = []
            for f in files:
                if not f.is_file():
                    problem = "is a folder, not a file" if f.is_dir() else "no such file"
                    refused.append(f"{f}: {problem}")
                    err_console.print(escape(f"refused {f}: {problem}"), soft_wrap=True)
                    continue
                task = bar.add_task(f"reading {f.name}", total=None)

                def rows_read(_name: str, n: int, t: TaskID = task) -> None:
                    bar.update(t, completed=n)

                try:
                    parsed.append(parse_file(f, cfg.nodes, node, rows_read))
                except LoadError as exc:
                    refused.append(str(exc))
                    err_console.print(escape(f"refused {exc} (nothing of it loaded)"), soft_wrap=True)
                bar.remove_task(task)

            async def write_all() -> None:
                for c in parsed:
                    task = bar.add_task(f"writing {c.file}", total=None)

                    def step(s: str, t: TaskID = task, name: str = c.file) -> None:
                        bar.update(t, description=f"{name}: {s}")

                    try:
                        report = await write_collected(cfg.nodes, c, step)
                    except LoadError as exc:  # e.g. a project another node holds: nothing of it written
                        bar.remove_task(task)
                        refused.append(str(exc))
                        err_console.print(escape(f"refused {exc} (nothing of it loaded)"), soft_wrap=True)
                        continue
                    bar.remove_task(task)
                    parts = [
                        f"{n}: {k.detections:,} detections, {k.releases} releases, {k.animals} animals, "
                        f"{k.moorings} deployments, {k.projects} projects"
                        for n, k in sorted(report.nodes.items())
                    ]
                    written = "; ".join(parts) or "nothing to write"
                    console.print(f"loaded {c.file} ({c.kind}, {c.rows:,} rows) -> {written}", soft_wrap=True)

            try:
                run(write_all())
            except NodeUnavailable as exc:
                fail(str(exc))
        if refused:
            fail(f"{len(refused)} of {len(files)} file(s) refused: {'; '.join(refused)}")
