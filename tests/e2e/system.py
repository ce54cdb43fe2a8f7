"""The four services as processes for one home node, and the CLI with the same environment.

Shared by the end-to-end tests; `store_env` gives the document store's settings (default: the folder
store under the test's folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from otn_push.demo.run import DemoPaths, start_services, stop_services
from shared.settings import Settings
from tests.integration.conftest import AMQP_URL, Rabbit

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "otn-push")


class System:
    def __init__(
        self,
        nodes: dict[str, str],
        home: str,
        base: Path,
        smtp_port: int,
        rabbit: Rabbit,
        store_env: dict[str, str] | None = None,
    ) -> None:
        self.paths = DemoPaths(base)
        for folder in (self.paths.store, self.paths.staging, self.paths.outbox, self.paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        exchange = f"otn.push.e2e-{uuid.uuid4().hex[:8]}"
        self.env = {
            "OTN_PUSH_NODES": ";".join(f"{n}={u}" for n, u in nodes.items()),
            "OTN_PUSH_HOME_NODE": home,
            "OTN_PUSH_AMQP_URL": AMQP_URL,
            "OTN_PUSH_EXCHANGE": exchange,
            # with another store, the folder store must stay empty: tests check it
            "OTN_PUSH_STORE_DIR": str(self.paths.store),
            **(store_env or {}),
            "OTN_PUSH_STAGING_DIR": str(self.paths.staging),
            "OTN_PUSH_OUTBOX_DIR": str(self.paths.outbox),
            "OTN_PUSH_SEND_MAIL": "true",
            "OTN_PUSH_SMTP_HOST": "127.0.0.1",
            "OTN_PUSH_SMTP_PORT": str(smtp_port),
            "OTN_PUSH_AUTO_PUSH": "false",
            "OTN_PUSH_RETRY_BASE_DELAY": "0.2",
            "OTN_PUSH_METRICS_PORT": "0",
        }
        self.settings = Settings(
            nodes=nodes,
            home_node=home,
            amqp_url=AMQP_URL,
            exchange=exchange,
            _env_file=None,  # type: ignore[call-arg]
        )
        rabbit.track(self.settings)
        self.services = start_services(self.env, self.paths, ROOT)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "COLUMNS": "200"}
        done = subprocess.run(
            [CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if check:
            assert done.returncode == 0, (
                f"otn-push {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def stored(self, code: str, name: str) -> Path:
        return self.paths.store / "data" / "repository" / code.lower() / "detection-extracts" / name

    def status(self, push_date: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("push", "status", "--push-date", push_date, "--json").stdout))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.paths.logs.glob("*.log")))

    def stop(self) -> None:
        """SIGTERM lets each service finish and exit 0."""
        stop_services(self.services)
        codes = {svc.name: svc.process.returncode for svc in self.services}
        assert all(code == 0 for code in codes.values()), codes
