"""docker-compose.yml is for users' deployments (no Docker engine here): check it statically."""

from __future__ import annotations

from pathlib import Path

import yaml

from otn_push.demo.run import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_each_service_with_the_command_the_tests_start() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"], name
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert {"postgres", "rabbitmq"} <= set(services)
    assert set(compose["volumes"]) >= {"staging", "store"}
