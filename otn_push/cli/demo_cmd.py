"""`otn-push demo` (a generated network pushed end to end) and `otn-push demo seed` (a large network)."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path
from typing import NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from otn_push.cli.common import console, err_console, fail, run, settings
from otn_push.demo.generate import DEFAULT_DETECTIONS, generate_network
from otn_push.demo.network import MIN_DETECTIONS
from otn_push.demo.preflight import preflight
from otn_push.demo.run import (
    DEMO_PREFIX,
    DemoError,
    demo_exchange,
    demo_push_date,
    describe,
    recreate_nodes,
    run_demo,
)
from shared.nodes import NodeUnavailable, asyncpg_dsn, database_name

EXTRA_NODES = ("NEP", "PATH", "MIGRAMAR", "PIRAT", "SAF")


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"--push-date: expected YYYY-MM-DD, got {value!r}", 2)


def _seed_nodes(configured: dict[str, str], count: int) -> dict[str, str]:
    """The first `count` configured nodes, plus demo databases on the first node's server if needed."""
    if count < 2:
        fail(f"--nodes: a network needs at least two nodes, got {count}", 2)
    nodes = dict(list(configured.items())[:count])
    first = next(iter(configured.values()))
    server = asyncpg_dsn(first).rsplit("/", 1)[0]
    # `otn_push_demo_otn` -> `otn_push_demo_nep`: named like the first node's database
    prefix = database_name(first).rsplit("_", 1)[0] + "_" if "_" in database_name(first) else DEMO_PREFIX
    extra = (name for name in EXTRA_NODES if name not in nodes)
    while len(nodes) < count:
        name = next(extra, None) or f"NODE{len(nodes) + 1}"
        nodes[name] = f"{server}/{prefix}{name.lower()}"
    return nodes


def _stop(problem: str) -> NoReturn:
    """One line, however narrow the terminal."""
    err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    demo = typer.Typer(help="The demo: a generated OTN-style network, pushed end to end.")
    app.add_typer(demo, name="demo")

    @demo.callback(invoke_without_command=True)
    def demo_push(
        ctx: typer.Context,
        detections: int = typer.Option(DEFAULT_DETECTIONS, help="Detections in the demo network."),
        seed: int = typer.Option(7, help="Random seed: the same seed gives the same network."),
        push_date: str | None = typer.Option(None, help="Push date (default: the latest published one)."),
        timeout: float = typer.Option(900.0, min=1, help="Seconds to wait for the push to finish."),
    ) -> None:
        """Recreate the demo node databases, start the four services, run one push and report it."""
        if ctx.invoked_subcommand is not None:
            return
        cfg = settings()
        problem = run(preflight(cfg))
        if problem:
            _stop(problem)
        # `kill` and `timeout` send SIGTERM: stop the services as Ctrl-C does, never leave them running
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            code = run_demo(
                console,
                root=Path.cwd(),
                detections=detections,
                seed=seed,
                push_date=_date(push_date),
                timeout=timeout,
                base=cfg,
                exchange=demo_exchange(cfg),
            )
        except (DemoError, NodeUnavailable, ValueError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted: the services were stopped; their logs are in var/demo/logs/", 130)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if code:
            err_console.print("[bold red]the demo push did not complete every extract[/]")
        raise typer.Exit(code)

    @demo.command("seed")
    def seed_network(
        detections: int = typer.Option(
            ..., min=MIN_DETECTIONS, help="Detections to generate (up to 10 million and more)."
        ),
        nodes: int = typer.Option(3, "--nodes", min=2, help="Number of node databases."),
        seed: int = typer.Option(7, help="Random seed: the same seed gives the same network."),
        push_date: str | None = typer.Option(None, help="Push date of the listed extracts."),
        years: int | None = typer.Option(
            None, min=1, max=50, help="Years of data (default 2 for small, 4 for large)."
        ),
    ) -> None:
        """Recreate the demo node databases and fill them with a large generated network (COPY, batches)."""
        cfg = settings()
        targets = _seed_nodes(cfg.nodes, nodes)
        problem = run(preflight(cfg, rabbitmq=False))
        if problem:
            _stop(problem)
        date = _date(push_date) or demo_push_date()
        progress = Progress(
            TextColumn("detections"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
        )
        task = progress.add_task("seed", total=detections, rate="")
        started = time.monotonic()

        def advance(written: int) -> None:
            rate = written / max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=written, rate=f"{rate:,.0f}/s")

        async def go() -> None:
            await recreate_nodes(targets)
            with progress:
                summary = await generate_network(
                    targets, seed=seed, push_date=date, detections=detections, years=years, progress=advance
                )
            describe(summary, console)

        try:
            run(go())
        except (DemoError, NodeUnavailable, ValueError) as exc:
            fail(str(exc))
        console.print(f"done in {time.monotonic() - started:,.1f}s; to use these nodes:")
        console.print(
            "OTN_PUSH_NODES=" + ";".join(f"{k}={v}" for k, v in targets.items()),
            highlight=False,
            soft_wrap=True,
        )
