"""`otn-push demo` helpers that need no service: environment, push date, database guard, stopping."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from otn_push.demo.run import (
    DemoError,
    DemoPaths,
    Service,
    demo_environment,
    demo_exchange,
    demo_push_date,
    demo_settings,
    recreate_nodes,
    stop_services,
)
from shared.settings import Settings


def test_the_demo_runs_on_an_exchange_of_its_own_derived_once_from_a_configured_one() -> None:
    assert demo_exchange(Settings()) == "otn.push.demo"
    assert demo_exchange(Settings(exchange="otn.push")) == "otn.push.demo"
    assert demo_exchange(Settings(exchange="node.act")) == "node.act.demo"
    # set to watch the demo from another terminal, then the demo run again in the same shell
    assert demo_exchange(Settings(exchange="otn.push.demo")) == "otn.push.demo"


def test_demo_push_date_is_the_latest_published_one_up_to_today() -> None:
    assert demo_push_date(dt.date(2026, 12, 3)) == dt.date(2026, 10, 15)
    assert demo_push_date(dt.date(2024, 6, 12)) == dt.date(2024, 2, 15)
    assert demo_push_date(dt.date(2024, 6, 13)) == dt.date(2024, 6, 13)


def test_environment_simulates_mail_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    paths = DemoPaths(tmp_path / "demo")
    monkeypatch.chdir(tmp_path)  # no .env here yet
    monkeypatch.delenv("OTN_PUSH_SEND_MAIL", raising=False)
    env = demo_environment(Settings(), paths, dt.date(2026, 10, 15), "otn.push.demo-x")
    assert env["OTN_PUSH_SEND_MAIL"] == "false"
    assert env["OTN_PUSH_EXCHANGE"] == "otn.push.demo-x"
    assert Path(env["OTN_PUSH_OUTBOX_DIR"]) == (tmp_path / "demo" / "outbox").resolve()
    settings = demo_settings(env)
    assert settings.store_dir == (tmp_path / "demo" / "store").resolve()
    assert settings.push_dates == [dt.date(2026, 10, 15)] and settings.auto_push is False
    assert settings.own_database_url == settings.home_url
    monkeypatch.setenv("OTN_PUSH_SEND_MAIL", "true")
    assert demo_environment(Settings(), paths, dt.date(2026, 10, 15))["OTN_PUSH_SEND_MAIL"] == "true"
    monkeypatch.delenv("OTN_PUSH_SEND_MAIL")
    (tmp_path / ".env").write_text("OTN_PUSH_SEND_MAIL=true\n")  # a .env file is the user's choice too
    assert demo_environment(Settings(), paths, dt.date(2026, 10, 15))["OTN_PUSH_SEND_MAIL"] == "true"


async def test_refuses_to_drop_a_database_that_is_not_a_demo_one() -> None:
    nodes = {
        "OTN": "postgresql://postgres@127.0.0.1:1/otn_push_demo_otn",
        "ACT": "postgresql://postgres@127.0.0.1:1/act_production",
    }
    # port 1 is never PostgreSQL: a DemoError (not a connection error) shows nothing was touched
    with pytest.raises(DemoError, match="act_production"):
        await recreate_nodes(nodes)


def test_fresh_folders_replace_an_earlier_run(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / "demo")
    paths.fresh()
    (paths.outbox / "old.eml").write_text("from an earlier demo")
    paths.fresh()
    assert paths.outbox.is_dir() and not any(paths.outbox.iterdir())


def test_stop_services_terminates_then_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    polite = "import time\nwhile True: time.sleep(0.1)"
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
    )
    stubborn += "while True: time.sleep(0.1)"
    services = []
    for name, code in (("polite", polite), ("stubborn", stubborn)):
        log = tmp_path / f"{name}.log"
        handle = log.open("w")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=handle, stderr=subprocess.STDOUT)
        services.append(Service(name, proc, log, handle))
    while "ready" not in (tmp_path / "stubborn.log").read_text():
        assert services[1].process.poll() is None
    stop_services(services, grace=1.0)
    assert services[0].process.returncode == -15  # SIGTERM
    assert services[1].process.returncode == -9  # SIGKILL after the grace period
