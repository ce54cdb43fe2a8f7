"""Issue 2's round trip through the running system: real OTN samples in, identical extracts out.

Three node databases (OTN, ACT, FACT) hold the four real samples. The four services run as processes
(the same commands as the demo and the compose file), over the real RabbitMQ, with real email to an
aiosmtpd server. The CLI drives everything: `list add`, `push start --wait`, `push status`, `list show`.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from otn_push.demo.run import wait_consuming
from shared.nodes import connection
from tests.e2e.system import System
from tests.integration.conftest import Rabbit
from tests.sample_compare import assert_legacy_equal, assert_same_lines, zipped_csv
from tests.smtp_sink import Inbox, running_smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.samples]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "otn-push")
NSBS_PUSH = "2022-10-20"
SERC1_PUSH = "2023-02-16"
LEGACY_PUSH = "2023-06-15"
# NSBS's own contacts, as its release rows carry them
NSBS_RECIPIENTS = {"manuel.dureuil@dal.ca", "brendal.townsend@dal.ca", "fwhoriskey@dal.ca"}
PROJ67_RECIPIENTS = {"bangleyc@si.edu", "ogburnm@si.edu"}


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with running_smtp_server() as server:
        yield server


async def list_rows(url: str, push_date: str) -> list[asyncpg.Record]:
    async with connection("home", url) as conn:
        return list(
            await conn.fetch(
                "SELECT detection_extract, completed, completed_date FROM obis.detection_extracts_list "
                "WHERE push_date = $1::text::date ORDER BY id",
                push_date,
            )
        )


async def test_push_of_real_samples_through_the_services(
    sample_nodes: dict[str, str],
    samples_dir: Path,
    tmp_path: Path,
    smtp: tuple[Inbox, int],
    rabbit: Rabbit,
) -> None:
    inbox, port = smtp

    # --- home node OTN: NSBS,2022,t (detections on OTN and ACT receivers) ---
    otn = System(sample_nodes, "OTN", tmp_path / "otn", port, rabbit)
    try:
        await wait_consuming(otn.settings, otn.services)
        # listed twice, once in lower case: one job, both list rows completed
        otn.cli(
            "list", "add", "--push-date", NSBS_PUSH, "--issue-link", "https://example.org/i/1",
            "NSBS,2022,t", "nsbs,2022,t",
        )  # fmt: skip
        otn.cli("push", "start", "--push-date", NSBS_PUSH, "--wait", "--timeout", "240")

        name = "nsbs_matched_detections_2022"
        original = zipped_csv(samples_dir / f"{name}.zip", f"{name}.csv")
        assert_same_lines(original, zipped_csv(otn.stored("NSBS", f"{name}.zip"), f"{name}.csv"))
        assert otn.stored("NSBS", f"{name}.parquet").stat().st_size > 0
        assert not list(otn.paths.store.rglob(".*")), "no temporary file may stay in the store"

        [(rcpts, message)] = inbox.for_push(NSBS_PUSH, "NSBS")
        assert {r.lower() for r in rcpts} == NSBS_RECIPIENTS | {"otndc@dal.ca"}  # PI + POCs, cc the node
        assert "otndc@dal.ca" in str(message["Cc"])
        body = message.get_body(("plain",))
        assert body is not None and f"{name}.zip" in body.get_content()

        status = otn.status(NSBS_PUSH)
        assert status["counts"] == {"completed": 1}
        [job] = status["jobs"]
        assert job["rows"] == 4067 and len(job["list_row_ids"]) == 2
        rows = await list_rows(sample_nodes["OTN"], NSBS_PUSH)
        assert len(rows) == 2 and all(r["completed"] and r["completed_date"] is not None for r in rows)
        assert "completed" in otn.cli("list", "show", "--push-date", NSBS_PUSH).stdout.lower()

        # the same push again does nothing new: no second email, same files
        before = otn.stored("NSBS", f"{name}.zip").stat().st_mtime_ns
        otn.cli("push", "start", "--push-date", NSBS_PUSH, "--wait", "--timeout", "120")
        assert len(inbox.for_push(NSBS_PUSH, "NSBS")) == 1
        assert otn.stored("NSBS", f"{name}.zip").stat().st_mtime_ns == before
    finally:
        otn.stop()

    # --- home node ACT: SERC1,2017,q (trackers on ACT and FACT), then the legacy exports ---
    act = System(sample_nodes, "ACT", tmp_path / "act", port, rabbit)
    try:
        await wait_consuming(act.settings, act.services)
        act.cli("list", "add", "--push-date", SERC1_PUSH, "SERC1,2017,q")
        act.cli("push", "start", "--push-date", SERC1_PUSH, "--wait", "--timeout", "240")
        name = "serc1_qualified_detections_2017"
        original = zipped_csv(samples_dir / f"{name}.zip", f"{name}.csv")
        assert_same_lines(original, zipped_csv(act.stored("SERC1", f"{name}.zip"), f"{name}.csv"))
        status = act.status(SERC1_PUSH)
        assert status["counts"] == {"completed": 1}
        # the SERC1 sample names no contacts of SERC1 itself: a warning, not a crash, and no email
        assert inbox.for_push(SERC1_PUSH, "SERC1") == []
        [job] = status["jobs"]
        assert "SERC1 has no usable email address: no email sent" in job["warnings"]
        [row] = await list_rows(sample_nodes["ACT"], SERC1_PUSH)
        assert row["completed"] is True

        act.cli(
            "push", "start", "--push-date", LEGACY_PUSH, "--format", "legacy",
            "--extract", "PROJ67,2017,t", "--extract", "PROJ61,2017,q", "--wait", "--timeout", "240",
        )  # fmt: skip
        original = zipped_csv(
            samples_dir / "proj67_matched_detections_2017.zip", "proj67_matched_detections_2017.csv"
        )
        built = zipped_csv(
            act.stored("PROJ67", "proj67_matched_detections_2017.zip"), "proj67_matched_detections_2017.csv"
        )
        assert len(assert_legacy_equal(original, built, "unqdetecid", skip=set())) == 34
        original = zipped_csv(
            samples_dir / "proj61_qualified_detections_2017_fixed.zip",
            "proj61_qualified_detections_2017_fixed.csv",
        )
        built = zipped_csv(
            act.stored("PROJ61", "proj61_qualified_detections_2017.zip"),
            "proj61_qualified_detections_2017.csv",
        )
        assert_legacy_equal(original, built, "catalognumber", skip={"timeofday"}, minutes_only=True)
        [(rcpts, _)] = inbox.for_push(LEGACY_PUSH, "PROJ67")
        assert {r.lower() for r in rcpts} == PROJ67_RECIPIENTS | {"otndc@dal.ca"}
        assert act.status(LEGACY_PUSH)["counts"] == {"completed": 2}
    finally:
        act.stop()


def test_zip_holds_exactly_one_csv(tmp_path: Path) -> None:
    """Guard for `zipped_csv`: an archive with anything beside the CSV fails the comparison."""
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.csv", "a\r\n")
        zf.writestr("extra.txt", "b")
    with pytest.raises(AssertionError):
        zipped_csv(path, "x.csv")
