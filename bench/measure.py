"""Run one measured process: wall time, exit status and the peak resident memory of that process alone."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Measured:
    wall: float  # seconds, process start to exit
    peak_rss_mb: float  # the process's own maximum resident set (wait4 rusage), MiB
    code: int  # exit code; negative: killed by that signal
    stdout: str
    stderr: str

    def last_json(self) -> dict[str, Any] | None:
        """The last stdout line that is a JSON object (what a bench child prints), else None."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    found: dict[str, Any] = json.loads(line)
                    return found
                except ValueError:
                    return None
        return None


def _cap(limit_bytes: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_measured(
    cmd: list[str], env: dict[str, str], cwd: Path, logs: Path, name: str, mem_cap_mb: int | None = None
) -> Measured:
    """Run `cmd` to its end; its output goes to `<logs>/<name>.out|.err` and is returned too."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
            preexec_fn=_cap(mem_cap_mb << 20) if mem_cap_mb else None,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        wall=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        code=proc.returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )
