"""The notifier refuses to start with a malformed sender, cc or templates folder, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.app import build_app
from services.notifier.render import TemplateProblem
from shared.settings import Settings, SettingsError


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"smtp_cc": "node@dal.ca, not-an-address"}, "OTN_PUSH_SMTP_CC"),
        ({"smtp_from": "otndc at dal.ca"}, "OTN_PUSH_SMTP_FROM"),
        ({"smtp_cc": "node@dal.ca\r\nBcc: x@evil.example"}, "OTN_PUSH_SMTP_CC"),
    ],
)
def test_bad_addresses_stop_the_service_naming_the_setting(overrides: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError, match=setting):
        build_app(settings(**overrides))


def test_missing_templates_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateProblem, match="not a folder"):
        build_app(settings(templates_dir=tmp_path / "nope"))


def test_good_settings_build_an_app() -> None:
    assert build_app(settings(smtp_cc="a@dal.ca; b@dal.ca")).broker is not None
