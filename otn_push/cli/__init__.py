"""`otn-push` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import logging

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


def main() -> None:
    # the AMQP libraries log a failed connection on their own; the command says it once, in one line
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    app()
