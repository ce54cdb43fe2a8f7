"""`otn-push dlq list|replay`: messages the services gave up on, and sending them back after a fix."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from otn_push.cli.common import console, fail, run, settings
from shared.deadletters import (
    DeadLetter,
    DeadLetterError,
    list_dead_letters,
    replay_dead_letters,
    resolve_role,
)


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(help="Dead-letter queues: list what died and why; replay it once the cause is fixed.")
    app.add_typer(dlq, name="dlq")

    @dlq.command("list")
    def list_(
        queue: str | None = typer.Option(None, "--queue", help="Only this work queue (e.g. extractor.jobs)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
    ) -> None:
        """Every dead-lettered message: queue, id, routing key, business key, deaths, reason, first death.

        Nothing is removed from the dead-letter queues."""
        cfg = settings()
        try:
            role = resolve_role(cfg, queue) if queue else None
            letters = run(list_dead_letters(cfg, role))
        except DeadLetterError as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps([letter.as_json() for letter in letters], indent=2, ensure_ascii=False))
            return
        table = Table(title=f"dead letters ({cfg.exchange})")
        for column in ("queue", "id", "routing key", "business key", "deaths", "reason", "first death"):
            table.add_column(column)
        for letter in letters:
            table.add_row(*(escape(cell) for cell in _cells(letter)))
        console.print(table)
        console.print(f"{len(letters)} dead-lettered message(s)")

    @dlq.command("replay")
    def replay(
        queue: str | None = typer.Option(None, "--queue", help="Only this work queue (e.g. extractor.jobs)."),
        ids: list[str] = typer.Option([], "--id", help="Message id (from `dlq list`); repeatable."),
        replay_all: bool = typer.Option(False, "--all", help="Replay every dead letter (of --queue)."),
    ) -> None:
        """Republish dead letters to the exchange with their original routing key, then remove them.

        A message leaves its dead-letter queue only after the broker confirmed the republish."""
        if bool(ids) == replay_all:
            fail("give either --id ID (repeatable) or --all", 2)
        cfg = settings()
        try:
            role = resolve_role(cfg, queue) if queue else None
            result = run(replay_dead_letters(cfg, role=role, ids=None if replay_all else set(ids)))
        except DeadLetterError as exc:
            fail(str(exc))
        for letter in result.replayed:
            console.print(
                escape(
                    f"replayed {letter.queue} {letter.id} ({letter.business_key}) as {letter.routing_key}"
                ),
                highlight=False,
            )
        missing = set(ids) - {letter.id for letter in result.replayed} - {f[0].id for f in result.failed}
        for letter, problem in result.failed:
            console.print(escape(f"kept {letter.queue} {letter.id}: {problem}"), highlight=False)
        if missing:
            fail(f"no dead letter with id {', '.join(sorted(missing))}")
        if result.failed:
            fail(f"{len(result.failed)} message(s) not replayed; they stay in their dead-letter queue")
        console.print(f"{len(result.replayed)} message(s) replayed")


def _cells(letter: DeadLetter) -> tuple[str, ...]:
    first = letter.first_death.strftime("%Y-%m-%d %H:%M:%S") if letter.first_death else ""
    return (
        letter.queue,
        letter.id,
        letter.routing_key,
        letter.business_key,
        str(letter.deaths),
        letter.reason,
        first,
    )
