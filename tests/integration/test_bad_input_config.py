"""A missing or malformed setting stops every service and the CLI at start with one line naming it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pw-4711"
PROGRAMS = {
    "scheduler": [sys.executable, "-m", "services.scheduler"],
    "extractor": [sys.executable, "-m", "services.extractor"],
    "uploader": [sys.executable, "-m", "services.uploader"],
    "notifier": [sys.executable, "-m", "services.notifier"],
    "cli": [sys.executable, "-c", "from otn_push.cli import main; main()", "dlq", "list"],
}
# a malformed value holding a password: every program must name the setting and never show the password
# (the other kinds of bad setting are named by the same code: tests/unit/test_bad_input_settings.py)
CASES = {
    "OTN_PUSH_NODES": {"OTN_PUSH_NODES": f"OTN=mysql://otn:{SECRET}@db.example/otn"},
}


async def run(program: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *program, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("setting", list(CASES))
async def test_bad_setting_stops_each_program_with_one_line(setting: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    env.update(CASES[setting], PYTHONPATH=str(ROOT), COLUMNS="60")
    # tmp_path as working directory: no .env is read, whatever the checkout holds
    results = await asyncio.gather(*(run(p, env, tmp_path) for p in PROGRAMS.values()))
    for name, (code, out, err) in zip(PROGRAMS, results, strict=True):
        lines = err.strip().splitlines()
        assert code == 2, f"{name}: exit {code}: {err}"
        assert len(lines) == 1, f"{name}: expected one line, got {err!r}"
        assert setting in lines[0], f"{name}: {lines[0]!r} does not name {setting}"
        assert SECRET not in err + out, f"{name} printed the secret"
        assert out == "", f"{name} printed to stdout: {out!r}"


async def test_an_unreachable_broker_stops_each_service_with_one_line_and_no_traceback(
    tmp_path: Path, own_db: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    # own tables reachable (scheduler and notifier migrate them first), RabbitMQ not
    env.update(
        OTN_PUSH_AMQP_URL=f"amqp://otn:{SECRET}@127.0.0.1:1/",
        OTN_PUSH_DATABASE_URL=own_db,
        PYTHONPATH=str(ROOT),
    )
    services = {name: program for name, program in PROGRAMS.items() if name != "cli"}
    results = await asyncio.gather(*(run(p, env, tmp_path) for p in services.values()))
    for name, (code, out, err) in zip(services, results, strict=True):
        assert code == 1, f"{name}: exit {code}: {err}"
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"otn-push {name}: cannot start: RabbitMQ at amqp://otn:***@127.0.0.1:1/"), (
            last
        )
        assert "Traceback" not in err and SECRET not in err + out, f"{name}: {err}"
