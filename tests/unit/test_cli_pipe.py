"""A reader that closes the pipe (`otn-push status --watch | head`) ends the command as SIGPIPE would (141),
not with 1, which `status` uses for "something is flagged"."""

from __future__ import annotations

import subprocess
import sys

import pytest

from otn_push.cli.common import CLOSED_PIPE


@pytest.mark.parametrize(
    "args",
    [
        ["calendar"],  # printed by rich
        ["nodes", "grants", "--role", "otnpush"],  # printed by typer.echo (click)
    ],
)
def test_a_closed_pipe_ends_the_command_with_141_and_no_traceback(args: list[str]) -> None:
    command = [sys.executable, "-c", "from otn_push.cli import main; main()", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == CLOSED_PIPE, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors


def test_a_pipe_read_to_the_end_ends_with_0() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from otn_push.cli import main; main()", "calendar"], capture_output=True
    )
    assert done.returncode == 0 and b"push date" in done.stdout
