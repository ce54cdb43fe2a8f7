"""`otn-push` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import inspect
import logging
import sys

import typer

from otn_push.cli import (
    calendar_cmd,
    db_cmd,
    demo_cmd,
    dlq_cmd,
    extract_cmd,
    list_cmd,
    load_cmd,
    nodes_cmd,
    push_cmd,
    report_cmd,
    status_cmd,
)
from otn_push.cli.common import CLOSED_PIPE

app = typer.Typer(
    name="otn-push",
    help="Build, upload, email and complete OTN detection extracts at push time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (nodes_cmd, db_cmd, load_cmd, extract_cmd, list_cmd, push_cmd, calendar_cmd, demo_cmd, dlq_cmd):
    module.register(app)
status_cmd.register(app)
report_cmd.register(app)


def reflow(text: str) -> str:
    """A docstring's paragraphs as single lines: typer keeps a docstring's line breaks, so a help text
    broke mid-sentence wherever the source did; rich wraps each paragraph to the terminal instead."""
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in text.strip().split("\n\n"))


def _reflow_help(group: typer.Typer) -> None:
    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback)
        if doc:
            command.help = reflow(doc)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


_reflow_help(app)


def main() -> None:
    # the AMQP libraries log a failed connection on their own; the command says it once, in one line
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        app()
    except SystemExit:
        # click (vendored by typer), like rich (see CliConsole), exits 1 when the reader closed the pipe,
        # which is not "flagged"; it wraps stdout in its PacifyFlushWrapper then
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            raise SystemExit(CLOSED_PIPE) from None
        raise
