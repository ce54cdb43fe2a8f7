"""`otn-push … --help`: every command's help paragraphs wrap to the terminal, not where the source broke."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from otn_push.cli import app


def commands(group: typer.Typer, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    for command in group.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        yield (*path, name), command.help or inspect.getdoc(command.callback) or ""
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name is not None
        yield from commands(sub.typer_instance, (*path, sub.name))


ALL = sorted(commands(app))


def test_every_command_is_found() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"extract", "list add", "push start", "status", "report", "demo seed", "dlq replay"} <= names


@pytest.mark.parametrize(("path", "doc"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_each_help_paragraph_is_one_line_on_a_wide_terminal(path: tuple[str, ...], doc: str) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    lines = [line.strip() for line in shown.output.splitlines()]
    for paragraph in doc.split("\n\n"):
        assert "\n" not in paragraph, f"{' '.join(path)}: a line break inside a paragraph: {paragraph!r}"
        assert paragraph.strip() in lines, f"{' '.join(path)}: not on one line: {paragraph!r}"
