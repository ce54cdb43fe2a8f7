"""A push into a real WebDAV server (OTN_PUSH_STORE=webdav): the four services as processes, a generated
network, real email to an aiosmtpd server, wsgidav on loopback. The CLI drives it, as an operator would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otn_push.demo.generate import generate_network
from otn_push.demo.run import wait_consuming
from tests.conftest import NodeFactory
from tests.e2e.system import System
from tests.integration.conftest import Rabbit
from tests.smtp_sink import Inbox, running_smtp_server
from tests.webdav_server import WebDavServer, running_webdav_server

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "otn-push")
PUSH_DATE = dt.date(2024, 10, 17)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[WebDavServer]:
    with running_webdav_server(tmp_path / "webdav") as server:
        yield server


def webdav_system(
    nodes: dict[str, str], base: Path, smtp_port: int, rabbit: Rabbit, store_url: str, dav: WebDavServer
) -> System:
    """The services of home node OTN with OTN_PUSH_STORE=webdav."""
    store = {
        "OTN_PUSH_STORE": "webdav",
        "OTN_PUSH_WEBDAV_URL": store_url,
        "OTN_PUSH_WEBDAV_USER": dav.user,
        "OTN_PUSH_WEBDAV_PASSWORD": dav.password,
    }
    return System(nodes, "OTN", base, smtp_port, rabbit, store_env=store)


def files_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every uploaded file of the push by its location in the store."""
    found: dict[str, dict[str, Any]] = {}
    for job in status["jobs"]:
        code = job["extract"].split(",")[0].lower()
        for file in job["files"]:
            assert file["path"] == f"{code}/detection-extracts/{file['name']}", file
            assert file["path"] not in found, f"{file['path']} listed twice"
            found[file["path"]] = file
    return found


def held(folder: Path) -> dict[str, str]:
    """Every file the WebDAV server holds, temporary ones included: location -> sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def links(inbox: Inbox, store_url: str) -> dict[str, set[str]]:
    """The store links in each project's email of the push (plain and HTML parts): project -> URLs."""
    found: dict[str, set[str]] = {}
    pattern = re.compile(re.escape(store_url) + r"/[^\s\"<>]+")
    for _, message in inbox.snapshot():
        push, project = str(message["X-OTN-Push"]).split(" ")
        if push != str(PUSH_DATE):
            continue
        urls = found.setdefault(project, set())
        for kind in ("plain", "html"):
            part = message.get_body((kind,))
            assert part is not None, f"{project}: no {kind} part"
            urls |= set(pattern.findall(part.get_content()))
    return found


async def test_push_into_webdav_publishes_every_file_and_a_re_push_replaces_them(
    make_nodes: NodeFactory,
    tmp_path: Path,
    smtp: tuple[Inbox, int],
    webdav: WebDavServer,
    rabbit: Rabbit,
) -> None:
    inbox, port = smtp
    nodes = await make_nodes("OTN", "ACT", "FACT")
    summary = await generate_network(nodes, seed=5, push_date=PUSH_DATE, detections=1000, home_node="OTN")
    store_url, folder = webdav.folder("repository")
    # one listed extract of every project keeps the push short and still fills a folder per project
    chosen = list({label.split(",")[0]: label for label in reversed(summary.extracts)}.values())
    extracts = [arg for label in chosen for arg in ("--extract", label)]
    system = webdav_system(nodes, tmp_path / "system", port, rabbit, store_url, webdav)
    try:
        await wait_consuming(system.settings, system.services)
        system.cli("push", "start", "--push-date", str(PUSH_DATE), *extracts, "--wait", "--timeout", "240")
        first = system.status(str(PUSH_DATE))
        assert len(chosen) > 3 and first["counts"] == {"completed": len(chosen)}, first["counts"]

        # every file at its URL on the server, with the content the extractor recorded, and nothing else
        files = files_of(first)
        assert len(files) == 2 * len(first["jobs"])  # a zip and a parquet per extract
        assert held(folder) == {location: f["sha256"] for location, f in files.items()}
        async with httpx.AsyncClient(auth=(webdav.user, webdav.password), timeout=30) as client:
            for location, file in files.items():
                assert file["url"] == f"{store_url}/{location}"
                answer = await client.get(file["url"])
                assert answer.status_code == 200, file["url"]
                assert hashlib.sha256(answer.content).hexdigest() == file["sha256"], file["url"]
        assert not any(p.is_file() for p in system.paths.store.rglob("*")), "the folder store was used"

        # each project's email links to its files on the server
        emailed = links(inbox, store_url)
        assert emailed, "no email linked a file on the WebDAV server"
        for project, urls in emailed.items():
            code = project.lower()
            expected = {f["url"] for loc, f in files.items() if loc.startswith(f"{code}/")}
            assert urls == expected, project
        emails = len(inbox.snapshot())

        # a re-push in the legacy layout rebuilds every extract: the same names, replaced in place
        system.cli(
            "push", "start", "--push-date", str(PUSH_DATE), *extracts, "--format", "legacy",
            "--wait", "--timeout", "240",
        )  # fmt: skip
        second = system.status(str(PUSH_DATE))
        assert second["counts"] == first["counts"]
        again = files_of(second)
        assert again.keys() == files.keys()
        changed = [loc for loc in files if again[loc]["sha256"] != files[loc]["sha256"]]
        assert changed, "the legacy layout should change the files"
        assert held(folder) == {location: f["sha256"] for location, f in again.items()}
        assert len(inbox.snapshot()) == emails  # researchers already emailed get no second email
    finally:
        system.stop()
    assert webdav.password not in system.logs()
