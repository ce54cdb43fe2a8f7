"""Each kind of bad setting is refused naming the setting (the one line the programs print)."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "setting", "problem"),
    [
        (
            {"OTN_PUSH_HOME_NODE": "act", "OTN_PUSH_NODES": "OTN=postgresql://h/otn"},
            "HOME_NODE",
            "home node ACT",
        ),
        ({"OTN_PUSH_PUSH_DATES": "2025-09-01,2025-13-40"}, "PUSH_DATES", "month must be in 1..12"),
        ({"OTN_PUSH_EXTRACT_FORMAT": "2019"}, "EXTRACT_FORMAT", "2025 or legacy"),
        ({"OTN_PUSH_SMTP_PORT": "twenty-five"}, "SMTP_PORT", "valid integer"),
        ({"OTN_PUSH_SEND_MAIL": "perhaps"}, "SEND_MAIL", "valid boolean"),
        ({"OTN_PUSH_NODES": ""}, "NODES", "no node configured"),
        ({"OTN_PUSH_NODES": "OTN=postgresql://h/a;otn=postgresql://h/b"}, "NODES", "listed twice"),
        # the base of the links in the researchers' emails
        ({"OTN_PUSH_STORE_URL": "notaurl"}, "STORE_URL", "must be an http://, https:// or file:// URL"),
        ({"OTN_PUSH_STORE_URL": "ftp://files.example.org/store"}, "STORE_URL", "got 'ftp://files"),
        ({"OTN_PUSH_PLONE_PATH": "/../etc"}, "PLONE_PATH", "segment '..' is no Plone id"),
        ({"OTN_PUSH_PLONE_PATH": "data/my folder"}, "PLONE_PATH", "segment 'my folder' is no Plone id"),
    ],
)
def test_bad_setting_is_named_with_its_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str, problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message.startswith(f"setting OTN_PUSH_{setting}:"), message
    assert problem in message and "\n" not in message


def test_good_store_urls_and_plone_paths_are_taken() -> None:
    assert load_settings(_env_file=None, store_url="https://files.example.org/store/").store_url == (
        "https://files.example.org/store"
    )
    assert load_settings(_env_file=None, store_url="file:///mnt/store").store_url == "file:///mnt/store"
    assert load_settings(_env_file=None, store_url="").store_url is None
    assert load_settings(_env_file=None, plone_path="/data/repository/").plone_path == "/data/repository/"
