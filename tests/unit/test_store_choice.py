"""OTN_PUSH_STORE picks the document store; a store without its URL, or a bad URL, is one clear line."""

from pathlib import Path

import pytest

from services.uploader.store import FolderStore
from services.uploader.store_choice import describe_store, make_store
from shared.settings import SettingsError, load_settings


def test_the_folder_store_is_the_default(tmp_path: Path) -> None:
    settings = load_settings(store_dir=tmp_path)
    store = make_store(settings)
    assert isinstance(store, FolderStore)
    assert store.root == tmp_path
    assert describe_store(settings) == f"folder {tmp_path}"


@pytest.mark.parametrize(
    "kind, setting", [("plone", "OTN_PUSH_PLONE_URL"), ("webdav", "OTN_PUSH_WEBDAV_URL")]
)
def test_a_store_without_its_url_is_refused_naming_the_setting(kind: str, setting: str) -> None:
    with pytest.raises(SettingsError, match=setting):
        make_store(load_settings(store=kind))


def test_an_unknown_store_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_STORE", "s3")
    with pytest.raises(SettingsError, match="OTN_PUSH_STORE: must be folder, webdav or plone"):
        load_settings()


def test_store_kind_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_STORE", " WebDAV ")
    assert load_settings().store == "webdav"


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("OTN_PUSH_PLONE_URL", "ftp://plone.example.org", "http:// or https://"),
        ("OTN_PUSH_WEBDAV_URL", "dav.example.org/extracts", "http:// or https://"),
        ("OTN_PUSH_PLONE_URL", "https://svc:hunter2@plone.example.org", "set OTN_PUSH_PLONE_PASSWORD"),
        ("OTN_PUSH_WEBDAV_URL", "https://svc:hunter2@dav.example.org/x", "set OTN_PUSH_WEBDAV_PASSWORD"),
    ],
)
def test_store_urls_are_checked_without_printing_a_password(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value) and problem in str(info.value)
    assert "hunter2" not in str(info.value)


def test_store_passwords_are_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_PLONE_PASSWORD", "plone-secret")
    monkeypatch.setenv("OTN_PUSH_WEBDAV_PASSWORD", "dav-secret")
    settings = load_settings()
    assert {"plone-secret", "dav-secret"} <= set(settings.secrets())
    assert "plone-secret" not in repr(settings) and "dav-secret" not in repr(settings)


def test_empty_store_urls_mean_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker-compose.yml passes unset variables as empty strings
    monkeypatch.setenv("OTN_PUSH_PLONE_URL", "")
    monkeypatch.setenv("OTN_PUSH_WEBDAV_URL", " ")
    settings = load_settings()
    assert settings.plone_url is None and settings.webdav_url is None


@pytest.mark.parametrize(
    "account, setting",
    [({}, "OTN_PUSH_PLONE_USER"), ({"plone_user": "svc"}, "OTN_PUSH_PLONE_PASSWORD"),
     ({"plone_user": "svc", "plone_password": ""}, "OTN_PUSH_PLONE_PASSWORD")],
)  # fmt: skip
def test_plone_without_its_service_account_is_refused(account: dict[str, str], setting: str) -> None:
    # anonymous uploads are refused by Plone: every job of the push would fail with 401
    settings = load_settings(store="plone", plone_url="http://127.0.0.1:8080/Plone", **account)
    with pytest.raises(SettingsError, match=f"setting {setting}: required when OTN_PUSH_STORE=plone"):
        make_store(settings)
