"""`otn-push nodes grants`: each section of the psql script connects to its own database's server."""

from __future__ import annotations

from shared.grants import grant_script
from shared.settings import Settings


def test_nodes_on_several_servers_get_a_connect_to_each_server() -> None:
    settings = Settings(
        nodes="OTN=postgresql://a@dbotn.example:5432/otn;ACT=postgresql://a:pw@dbact.example:6432/act;"
        "FACT=postgresql://a@dbact.example:6433/act",  # the same name on another server: its own section
        home_node="OTN",
        _env_file=None,  # type: ignore[call-arg]
    )
    connects = [
        line for line in grant_script(settings, "otnpush").splitlines() if line.startswith("\\connect")
    ]
    assert connects == [
        '\\connect "otn" - dbotn.example 5432',
        '\\connect "act" - dbact.example 6432',
        '\\connect "act" - dbact.example 6433',
    ]


def test_a_socket_url_without_a_host_connects_by_name_only() -> None:
    settings = Settings(nodes="OTN=postgresql:///otn", home_node="OTN", _env_file=None)  # type: ignore[call-arg]
    assert '\\connect "otn"\n' in grant_script(settings, "otnpush")
