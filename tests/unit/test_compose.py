"""docker-compose.yml and the Dockerfile are for users' deployments (no Docker engine here): check them
statically — against the Compose Specification's JSON schema, and against what the e2e tests run.

The schema is the compose-spec JSON schema that `check-jsonschema` (a dev dependency) ships in
`check_jsonschema/builtin_schemas/vendor/compose-spec.json`, under the Compose Specification's Apache 2.0
licence (`vendor/licenses/LICENSE.compose-spec` beside it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from otn_push.demo.run import SERVICES, DemoPaths, start_services
from shared.metrics import SERVICE_OFFSETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_schema() -> dict[str, Any]:
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_broken_compose_file(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    broken = json.loads(json.dumps(compose))
    broken["services"]["scheduler"]["restart_policy"] = "always"  # no such key
    broken["services"]["extractor"]["depends_on"] = {"postgres": {"condition": "when-ready"}}
    assert len(list(validator.iter_errors(broken))) >= 2


def started_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list[str]]:
    """The argv `start_services` (what the e2e tests and the demo use) gives each service."""
    seen: dict[str, list[str]] = {}

    class Recorder:
        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            seen[argv[-1].removeprefix("services.")] = list(argv)

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    paths = DemoPaths(tmp_path)
    paths.logs.mkdir(parents=True)
    for service in start_services({}, paths, ROOT):
        service.handle.close()
    return seen


def test_compose_runs_each_service_with_the_command_the_tests_start(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = started_commands(monkeypatch, tmp_path)
    assert set(started) == set(SERVICES)
    services = compose["services"]
    for name in SERVICES:
        argv = started[name]
        assert argv[0] == sys.executable
        # the image's interpreter is `python`; everything after it is the same
        assert services[name]["command"] == ["python", *argv[1:]], name


def test_services_wait_for_healthy_dependencies_and_are_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "rabbitmq", "mailpit", "init", "demo-seed"} <= set(services)
    for name in SERVICES:
        svc = services[name]
        depends = svc["depends_on"]
        assert {depends[d]["condition"] for d in ("postgres", "rabbitmq", "mailpit")} == {"service_healthy"}
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["test"] == ["CMD", "python", "-m", "shared.health", name]
        assert svc["stop_grace_period"] == "30m"
        # the service's own grace (default 30 s) must use that time, and end before the runtime kills it
        grace = svc["environment"]["OTN_PUSH_SHUTDOWN_GRACE"]
        assert grace.startswith("${OTN_PUSH_SHUTDOWN_GRACE:-")
        assert 25 * 60 <= float(grace.split(":-")[1].rstrip("}")) < 30 * 60
        assert {v.split(":")[0] for v in svc["volumes"]} >= {"staging", "store"}
    # scalable: no fixed name or host port on the extractor
    assert "container_name" not in services["extractor"] and "ports" not in services["extractor"]
    assert set(compose["volumes"]) >= {"staging", "store", "pgdata"}
    assert {d: c["condition"] for d, c in services["demo-seed"]["depends_on"].items()} == {
        name: "service_healthy" for name in SERVICES
    }
    assert services["init"]["command"] == [
        "sh",
        "-c",
        '{ [ "$$OTN_PUSH_NODES_INIT" = false ] || otn-push nodes init; } && otn-push db upgrade',
    ]


def test_rabbitmq_is_pinned_with_management_and_prometheus(compose: dict[str, Any]) -> None:
    rabbit = compose["services"]["rabbitmq"]
    image, _, tag = rabbit["image"].partition(":")
    assert image == "rabbitmq" and tag.split(".")[0] == "3" and tag.endswith("-management")
    plugins = compose["configs"][rabbit["configs"][0]["source"]]["content"]
    assert plugins.strip() == "[rabbitmq_management,rabbitmq_prometheus]."
    assert rabbit["configs"][0]["target"] == "/etc/rabbitmq/enabled_plugins"
    assert compose["services"]["mailpit"]["image"].startswith("axllent/mailpit:")


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all("-slim" in line for line in froms)
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert health and '"shared.health"' in health[0]
    ports = next(line for line in lines if line.startswith("EXPOSE "))
    assert sorted(int(p) for p in ports.split()[1:]) == sorted(9460 + o for o in SERVICE_OFFSETS.values())
