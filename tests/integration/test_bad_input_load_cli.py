"""`otn-push load` with good and bad files together: each bad file is refused whole, naming the file,
row and column; the good ones load; the exit code says something was refused."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otn_push.cli import app
from shared.nodes import connection
from tests.conftest import NodeFactory
from tests.integration.test_load import QUALIFIED_HEADER, qualified_row

pytestmark = pytest.mark.integration


def write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(QUALIFIED_HEADER)
        writer.writerows(rows)
    return path


@pytest.fixture
async def nodes(make_nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    made = await make_nodes("OTN", "ACT")
    monkeypatch.setenv("OTN_PUSH_NODES", ";".join(f"{k}={v}" for k, v in made.items()))
    monkeypatch.setenv("OTN_PUSH_HOME_NODE", "OTN")
    return made


async def detection_ids(url: str) -> list[int]:
    async with connection("ACT", url) as conn:
        rows = await conn.fetch("SELECT detection_id FROM obis.otn_detections ORDER BY detection_id")
    return [r["detection_id"] for r in rows]


def test_bad_files_are_refused_and_the_good_ones_load(nodes: dict[str, str], tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", [qualified_row(1, "2017-04-08T05:34:00Z")])
    bad_row = qualified_row(3, "2017-05-02 00:00:00")
    bad_row[QUALIFIED_HEADER.index("latitude")] = "38,5N"
    bad = write(tmp_path / "bad.csv", [qualified_row(2, "2017-05-01 00:00:01"), bad_row])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")

    result = CliRunner().invoke(app, ["load", "--node", "ACT", str(bad), str(good), str(empty)])
    assert result.exit_code == 1
    assert "refused bad.csv, row 2, column latitude: '38,5N' is not a number" in result.output
    assert "refused empty.csv: empty file" in result.output
    assert "loaded good.csv" in result.output and "ACT: 1 detections" in result.output
    assert "2 of 3 file(s) refused" in result.output
    # nothing of bad.csv, not even its good first row
    assert asyncio.run(detection_ids(nodes["ACT"])) == [1]
