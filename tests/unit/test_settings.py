from pathlib import Path

import pytest

from shared.redact import redact_text, redact_url
from shared.settings import SettingsError, load_settings, parse_nodes, setting_warnings, unknown_variables


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


def test_passwords_given_as_query_parameters_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/otn?sslmode=disable&password=Sup3rQ"
    assert "Sup3rQ" not in redact_url(url) and "sslmode=disable" in redact_url(url)
    assert "Sup3rQ" not in redact_text(f"cannot reach {url} now")
    monkeypatch.setenv("OTN_PUSH_NODES", f"OTN={url}")
    assert "Sup3rQ" in load_settings().secrets()


@pytest.mark.parametrize(
    "variable, value",
    [
        ("OTN_PUSH_QUIET_PERIOD", "-1"),
        ("OTN_PUSH_SMTP_PORT", "99999"),
        ("OTN_PUSH_AMQP_URL", "http://guest:pw@host/"),
        ("OTN_PUSH_LOG_LEVEL", "LOUD"),
        ("OTN_PUSH_NODES", "OTN=postgresql://u:pw@h:5432/"),
        ("OTN_PUSH_DELIVERY_LIMIT", "0"),
        ("OTN_PUSH_AMQP_URL", "amqp://guest:pw@127.0.0.1:99999/"),
        ("OTN_PUSH_AMQP_URL", "amqp://guest:pw@127.0.0.1:abc/"),
        ("OTN_PUSH_NODES", "OTN=postgresql://u:pw@h:abc/db"),
        ("OTN_PUSH_NODES", "OTN=postgresql://u:pw@h:70000/db"),
        ("OTN_PUSH_NODES", "OTN=postgresql://u:pw@h/db?sslmode=bogus"),
        ("OTN_PUSH_NODES", "OTN=postgresql://u:pw@[::1/db"),
        ("OTN_PUSH_DATABASE_URL", "postgresql://u:pw@h:0/db"),
        ("OTN_PUSH_MANAGEMENT_URL", "http://u:pw@h:abc"),
        ("OTN_PUSH_EXCHANGE", ""),
        ("OTN_PUSH_EXCHANGE", "a b"),
        ("OTN_PUSH_STATUS_MAX_READY", "-5"),
    ],
)
def test_malformed_settings_are_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"setting {variable}:") and "\n" not in message
    assert "pw" not in message and "Value error" not in message


def test_the_extract_format_defaults_to_the_setting_and_ignores_case(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from otn_push.cli.common import extract_format

    monkeypatch.setenv("OTN_PUSH_EXTRACT_FORMAT", "legacy")
    cfg = load_settings()
    assert extract_format(None, cfg) == "legacy"
    assert extract_format("2025", cfg) == "2025"
    assert extract_format(" LEGACY ", cfg) == "legacy"
    with pytest.raises(typer.Exit):
        extract_format("2019", cfg)


def test_a_misspelled_variable_is_named_with_the_setting_it_resembles(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OTN_PUSH_SMTP_PASWORD=x\nOTHER=1\n")
    environ = {
        "OTN_PUSH_NODE": "OTN=postgresql://h/otn",  # not OTN_PUSH_NODES: the demo nodes would be used
        "OTN_PUSH_NODES": "OTN=postgresql://h/otn",
        "OTN_PUSH_REQUIRE_SAMPLES": "1",  # the test suite's own
        "OTN_PUSH_TEST_PG": "postgresql://h/x",
        "PATH": "/bin",
    }
    assert unknown_variables(environ, env_file) == [
        "OTN_PUSH_NODE is not an otn-push setting and is ignored (did you mean OTN_PUSH_NODES?)",
        "OTN_PUSH_SMTP_PASWORD is not an otn-push setting and is ignored "
        "(did you mean OTN_PUSH_SMTP_PASSWORD?)",
    ]
    assert unknown_variables({"OTN_PUSH_NODES": "x"}, None) == []


def test_a_url_typed_without_its_scheme_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in [
        ("OTN_PUSH_PLONE_URL", "u:Sekr3tPW@127.0.0.1/Plone"),
        ("OTN_PUSH_AMQP_URL", "guest:Sekr3tPW@127.0.0.1:5672/"),
        ("OTN_PUSH_DATABASE_URL", "u:Sekr3tPW@h/db"),
        ("OTN_PUSH_NODES", "OTN=postgres:Sekr3tPW@127.0.0.1/otn"),  # "postgres:" parses as a scheme
    ]:
        monkeypatch.setenv("OTN_PUSH_STORE", "plone")
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as info:
            load_settings()
        assert str(info.value).startswith(f"setting {variable}:") and "Sekr3tPW" not in str(info.value)
        monkeypatch.delenv(variable)


def test_a_variable_in_another_case_is_the_setting_itself() -> None:
    assert unknown_variables({"OTN_PUSH_exchange": "x", "otn_push_store": "folder"}, None) == []
    assert unknown_variables({"OTN_PUSH_XYZZY": "1"}, None) == [
        "OTN_PUSH_XYZZY is not an otn-push setting and is ignored"
    ]


def test_a_env_line_that_is_no_statement_is_named_by_file_and_line_never_by_content(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        'OTN_PUSH_LOG_LEVEL=info\nsmtp password Sekr3tPW\nOTN_PUSH_EXCHANGE="otn.push\nOTN_PUSH_NODE=x\n'
    )
    warnings = setting_warnings({}, env_file)
    assert warnings[:2] == [
        f"{env_file} line 2: not a NAME=VALUE statement, ignored",
        f"{env_file} line 3: not a NAME=VALUE statement, ignored",
    ]
    assert warnings[2].startswith("OTN_PUSH_NODE is not an otn-push setting")
    assert not any("Sekr3tPW" in line for line in warnings)
    assert setting_warnings({}, tmp_path / "absent.env") == []


def test_a_env_file_that_is_not_utf8_is_one_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"OTN_PUSH_LOG_LEVEL=info\n\xff\xfe\n")
    with pytest.raises(SettingsError, match=r"\.env: not UTF-8 text \(byte 24\)"):
        load_settings()
    assert setting_warnings({}, tmp_path / ".env") == [
        f"{tmp_path / '.env'}: cannot be read (UnicodeDecodeError)"
    ]
