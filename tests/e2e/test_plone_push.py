"""A push of the real OTN samples into a real Plone site, through the four services as processes.

The uploader publishes with OTN_PUSH_STORE=plone as the service account; every link of the email opens
the uploaded item, and a re-push of the same extract replaces the items in place, never adding `…-1`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otn_push.demo.run import wait_consuming
from tests.e2e.system import System
from tests.integration.conftest import Rabbit
from tests.plone_server import PloneSite, plone_site_fixture  # noqa: F401 (the session fixture `plone_site`)
from tests.sample_compare import assert_same_lines, zipped_csv
from tests.smtp_sink import Inbox, running_smtp_server

# the first test also builds the Plone environment when no earlier run left it (minutes, from nothing)
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.samples, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
# the session's sample nodes (and otn-push's own tables in them) are shared with test_sample_push.py:
# pushes of their own dates, or one test's NSBS email would count as already sent in the other
FIRST_PUSH = "2024-02-15"
RE_PUSH = "2024-06-13"
NAME = "nsbs_matched_detections_2022"
JSON = {"Accept": "application/json"}


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with running_smtp_server() as server:
        yield server


def plone_system(
    nodes: dict[str, str], base: Path, smtp_port: int, rabbit: Rabbit, site: PloneSite, path: str
) -> System:
    """The services of home node OTN with the Plone store."""
    store = {
        "OTN_PUSH_STORE": "plone",
        "OTN_PUSH_PLONE_URL": site.url,
        "OTN_PUSH_PLONE_USER": site.user,
        "OTN_PUSH_PLONE_PASSWORD": site.password,
        "OTN_PUSH_PLONE_PATH": path,
    }
    return System(nodes, "OTN", base, smtp_port, rabbit, store_env=store)


def links(message: Any, site: PloneSite) -> list[str]:
    body = message.get_body(("plain",)).get_content()
    return re.findall(re.escape(site.url) + r"\S+", body)


def items(site: PloneSite, folder: str) -> dict[str, dict[str, Any]]:
    got = httpx.get(f"{folder}?b_size=1000", auth=site.auth, headers=JSON, timeout=60)
    got.raise_for_status()
    return {item["@id"]: item for item in got.json()["items"]}


def open_link(site: PloneSite, link: str) -> bytes:
    """What a researcher gets from the link: the file itself (Plone serves a File item's content at its
    URL), the same as the item's download, and what its recorded sha256 says."""
    opened = httpx.get(link, auth=site.auth, timeout=120)
    assert opened.status_code == 200, f"{link} -> {opened.status_code}"
    item = httpx.get(link, auth=site.auth, headers=JSON, timeout=60).json()
    assert item["@type"] == "File"
    download = httpx.get(item["file"]["download"], auth=site.auth, timeout=120)
    assert download.status_code == 200 and download.content == opened.content
    assert item["description"] == f"sha256:{hashlib.sha256(opened.content).hexdigest()}"
    return opened.content


async def test_push_of_real_samples_into_plone_then_re_push_replaces(
    plone_site: PloneSite,
    sample_nodes: dict[str, str],
    samples_dir: Path,
    tmp_path: Path,
    smtp: tuple[Inbox, int],
    rabbit: Rabbit,
) -> None:
    site, (inbox, port) = plone_site, smtp
    # a repository of its own (the service account has rights there), so other tests' items never mix in
    path = f"data/repository/e2e{uuid.uuid4().hex[:6]}"
    admin = httpx.AsyncClient(auth=site.admin_auth, headers=JSON, timeout=60)
    admin_create = await admin.post(
        f"{site.url}/data/repository", json={"@type": "Folder", "id": path.rsplit("/", 1)[1], "title": "e2e"}
    )
    assert admin_create.status_code == 201, admin_create.text
    folder = f"{site.url}/{path}/nsbs/detection-extracts"
    original = zipped_csv(samples_dir / f"{NAME}.zip", f"{NAME}.csv")

    otn = plone_system(sample_nodes, tmp_path / "otn", port, rabbit, site, path)
    try:
        await wait_consuming(otn.settings, otn.services)
        otn.cli("list", "add", "--push-date", FIRST_PUSH, "NSBS,2022,t")
        otn.cli("push", "start", "--push-date", FIRST_PUSH, "--wait", "--timeout", "240")
        assert otn.status(FIRST_PUSH)["counts"] == {"completed": 1}

        [(_, message)] = inbox.for_push(FIRST_PUSH, "NSBS")
        first_links = links(message, site)
        assert sorted(first_links) == [f"{folder}/{NAME}-parquet", f"{folder}/{NAME}.zip"]
        assert sorted(items(site, folder)) == sorted(first_links)
        zipped = tmp_path / "downloaded.zip"
        zipped.write_bytes(open_link(site, f"{folder}/{NAME}.zip"))
        assert_same_lines(original, zipped_csv(zipped, f"{NAME}.csv"))
        assert open_link(site, f"{folder}/{NAME}-parquet")[:4] == b"PAR1"

        # someone replaced the zip by hand in the meantime: the re-push puts the extract back, in place
        tampered = await admin.patch(
            f"{folder}/{NAME}.zip",
            json={
                "description": "",
                "file": {
                    "data": base64.b64encode(b"not an extract").decode(),
                    "encoding": "base64",
                    "filename": f"{NAME}.zip",
                    "content-type": "application/zip",
                },
            },
        )
        assert tampered.status_code == 204, tampered.text
        otn.cli("list", "add", "--push-date", RE_PUSH, "NSBS,2022,t")
        otn.cli("push", "start", "--push-date", RE_PUSH, "--wait", "--timeout", "240")
        assert otn.status(RE_PUSH)["counts"] == {"completed": 1}

        [(_, message)] = inbox.for_push(RE_PUSH, "NSBS")
        assert sorted(links(message, site)) == sorted(first_links)
        assert sorted(items(site, folder)) == sorted(first_links)  # no …-1 beside them
        zipped.write_bytes(open_link(site, f"{folder}/{NAME}.zip"))
        assert_same_lines(original, zipped_csv(zipped, f"{NAME}.csv"))
        uploader_log = (otn.paths.logs / "uploader.log").read_text()
        # uploaded, then replaced (not "already stored")
        assert len(re.findall(rf"(?<!already )stored {NAME}\.zip ->", uploader_log)) == 2
        for log in otn.paths.logs.glob("*.log"):
            assert site.password not in log.read_text(), f"the Plone password appears in {log.name}"
    finally:
        otn.stop()
        await admin.aclose()
