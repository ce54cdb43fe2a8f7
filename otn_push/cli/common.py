"""Helpers shared by the CLI commands: settings, async running, one-line errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from shared.redact import redact_text
from shared.settings import Settings, SettingsError, load_settings, setting_warnings

T = TypeVar("T")
# piped or redirected (`| grep`, `> file`), tables and lines would be cut to 80 columns: print whole values
PIPE_WIDTH = 10_000


CLOSED_PIPE = 141  # 128 + SIGPIPE: how a Unix tool ends when its reader has gone


class CliConsole(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 when the reader closed the pipe (`status --watch | head`), which `status` uses for
        # "something is flagged": end as any tool killed by SIGPIPE instead
        try:
            super().on_broken_pipe()
        except SystemExit:
            raise SystemExit(CLOSED_PIPE) from None


def _console(stderr: bool = False) -> Console:
    probe = CliConsole(stderr=stderr)
    return probe if probe.is_terminal else CliConsole(stderr=stderr, width=PIPE_WIDTH)


console = _console()
err_console = _console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: one line whatever the terminal width, so that logs and scripts see the whole error
    err_console.print(f"[bold red]error:[/] {escape(redact_text(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        cfg = load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)
    for line in setting_warnings():
        err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return cfg


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and its parents that do not exist yet, innermost first: what writing there will make."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty(made: list[Path]) -> None:
    """Remove the folders made for --out (innermost first) that a failed command left empty."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def extract_format(option: str | None, cfg: Settings) -> str:
    """`--format` (any case), else the OTN_PUSH_EXTRACT_FORMAT setting."""
    if option is None:
        return cfg.extract_format
    value = option.strip().lower()
    if value not in ("2025", "legacy"):
        fail(f"--format {option!r}: expected 2025 or legacy")
    return value
