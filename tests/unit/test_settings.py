import pytest

from shared.redact import redact_text, redact_url
from shared.settings import SettingsError, load_settings, parse_nodes


def test_parse_nodes_keeps_order_and_uppercases() -> None:
    nodes = parse_nodes(" otn=postgresql://a/otn ; ACT=postgresql://b/act;")
    assert list(nodes) == ["OTN", "ACT"]
    assert nodes["ACT"] == "postgresql://b/act"


@pytest.mark.parametrize(
    "raw, problem",
    [("OTN", "expected NAME="), ("OTN=mysql://x/y", "must start with postgresql"), ("", "no node")],
)
def test_parse_nodes_rejects_bad_input(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_nodes(raw)


def test_bad_setting_names_the_setting_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_NODES", "OTN=postgresql://u:hunter2@h/db;ACT")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "OTN_PUSH_NODES" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_home_node_must_be_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTN_PUSH_NODES", "OTN=postgresql://h/otn")
    monkeypatch.setenv("OTN_PUSH_HOME_NODE", "act")
    with pytest.raises(SettingsError, match="home node ACT"):
        load_settings()


def test_redaction() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "pw" not in redact_text("failed amqp://guest:pw@host/ and postgresql://x:pw@y/z")
    assert redact_text("token abc", ["abc"]) == "token ***"
