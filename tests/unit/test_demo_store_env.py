"""`otn-push demo` passes the user's document store settings on to the services."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from otn_push.demo.run import DemoPaths, demo_environment
from shared.settings import Settings


def test_demo_passes_the_plone_store_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_STORE", "plone")
    monkeypatch.setenv("OTN_PUSH_PLONE_URL", "http://127.0.0.1:8080/Plone/")
    monkeypatch.setenv("OTN_PUSH_PLONE_USER", "uploader")
    monkeypatch.setenv("OTN_PUSH_PLONE_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("OTN_PUSH_PLONE_NODE_FOLDERS", "true")
    env = demo_environment(Settings(_env_file=None), DemoPaths(tmp_path), dt.date(2026, 10, 15))  # type: ignore[call-arg]
    assert env["OTN_PUSH_STORE"] == "plone"
    assert env["OTN_PUSH_PLONE_URL"] == "http://127.0.0.1:8080/Plone"
    assert (env["OTN_PUSH_PLONE_USER"], env["OTN_PUSH_PLONE_PASSWORD"]) == ("uploader", "s3cret-pw")
    assert (env["OTN_PUSH_PLONE_PATH"], env["OTN_PUSH_PLONE_NODE_FOLDERS"]) == ("data/repository", "true")


def test_demo_keeps_its_own_folder_store_by_default(tmp_path: Path) -> None:
    env = demo_environment(Settings(_env_file=None), DemoPaths(tmp_path), dt.date(2026, 10, 15))  # type: ignore[call-arg]
    assert env["OTN_PUSH_STORE"] == "folder"
    assert env["OTN_PUSH_STORE_DIR"] == str((tmp_path / "store").resolve())
    assert not any(key.startswith(("OTN_PUSH_PLONE_URL", "OTN_PUSH_WEBDAV")) for key in env)


def test_demo_refuses_a_store_setting_before_touching_any_database(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from otn_push.demo.run import run_demo
    from shared.settings import Settings, SettingsError

    # nodes nobody can reach: getting past the store check would fail differently
    unreachable = {
        n: f"postgresql://postgres@127.0.0.1:1/otn_push_demo_x_{n.lower()}" for n in ("OTN", "ACT")
    }
    base = Settings(nodes=unreachable, home_node="OTN", store="plone", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="OTN_PUSH_PLONE_URL"):
        run_demo(Console(file=io.StringIO()), root=tmp_path, base=base, folder=tmp_path / "demo")
