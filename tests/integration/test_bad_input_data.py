"""Awkward node data: overlapping deployments of one receiver, a tag released twice, null stations and
detections no deployment places. Every detection appears exactly once, nothing is dropped silently, and
what cannot be placed is reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.extractor.engine import build_extract
from shared.nodes import connection
from tests.conftest import NodeFactory
from tests.integration.test_extract_kinds import POINT, add_detections, add_project, csv_rows

pytestmark = pytest.mark.integration

t = dt.datetime


@pytest.fixture
async def awkward(make_nodes: NodeFactory) -> dict[str, str]:
    nodes = await make_nodes("A", "B")
    async with connection("A", nodes["A"]) as a, connection("B", nodes["B"]) as b:
        await add_project(a, "ARR", "A")
        # receiver 007 has two deployments that overlap from June to December 2021
        for mooring, station, start, end in (
            ("S1-VR2W-007-2021_01_01T00", "S1", "2021-01-01", "2021-12-31"),
            ("S2-VR2W-007-2021_06_01T00", "S2", "2021-06-01", "2022-06-01"),
        ):
            await a.execute(
                "INSERT INTO obis.moorings (catalognumber, collectioncode, station_name, rcvrserial, "
                "rcvrmodel, deploy_date, recovery_date) VALUES ($1, 'ARR', $2, '007', 'VR2W', $3, $4)",
                mooring,
                station,
                dt.date.fromisoformat(start),
                dt.date.fromisoformat(end),
            )
        await add_project(b, "TAG", "B", share_species_with_array_owners=True)
        await b.execute("INSERT INTO obis.otn_animals VALUES ('TAG-1', 'TAG', 'Gadus morhua', 'cod', false)")
        for tagname, when in (("A69-1-1", t(2021, 2, 1, 12)), ("A69-1-3", t(2021, 8, 1, 12))):
            await b.execute(
                "INSERT INTO obis.otn_tag_releases (tagname, catalognumber, collectioncode, "
                "utc_release_date_time, release_locality, release_latitude, release_longitude, release_geom) "
                "VALUES ($1, 'TAG-1', 'TAG', $2, 'Harbour', 2.0, -1.0, $3)",
                tagname,
                when,
                POINT,
            )
        await add_detections(
            a,
            [
                # in the overlap, placed by serial (no rcvrcatnumber): both deployments match
                ("ARR", 1, "007", "S1", None, 2.0, -1.0, POINT, "A69-1-1", "A69-1",
                 t(2021, 7, 1, 10), None, "animal", "TAG", "TAG-1"),
                # null station
                ("ARR", 2, "007", None, None, 2.0, -1.0, POINT, "A69-1-1", "A69-1",
                 t(2021, 7, 2, 10), None, "animal", "TAG", "TAG-1"),
                # the second tag of the same animal, after its second release
                ("ARR", 3, "007", "S2", None, 2.0, -1.0, POINT, "A69-1-3", "A69-1",
                 t(2021, 9, 1, 10), None, "animal", "TAG", "TAG-1"),
                # receiver 009: no deployment at all
                ("ARR", 4, "009", "S9", None, 2.0, -1.0, POINT, "A69-1-3", "A69-1",
                 t(2021, 9, 2, 10), None, "animal", "TAG", "TAG-1"),
                # receiver 007 after both deployments ended
                ("ARR", 5, "007", "S2", None, 2.0, -1.0, POINT, "A69-1-3", "A69-1",
                 t(2021, 12, 31, 23) + dt.timedelta(days=200), None, "animal", "TAG", "TAG-1"),
            ],
        )  # fmt: skip
    return nodes


async def test_matched_lists_each_detection_once_both_releases_and_reports_the_unplaced(
    awkward: dict[str, str], tmp_path: Path
) -> None:
    result = await build_extract(awkward, "TAG", 2021, "t", tmp_path)
    rows = csv_rows(result)
    releases = [r for r in rows if r["receiver"] == "release"]
    detections = [r for r in rows if r["receiver"] != "release"]
    assert sorted(r["tagName"] for r in releases) == ["A69-1-1", "A69-1-3"]
    assert sorted(r["unqDetecID"] for r in detections) == ["ARR-A69-1-1-1", "ARR-A69-1-1-2", "ARR-A69-1-3-3",
                                                            "ARR-A69-1-3-4"]  # fmt: skip
    assert result.rows == len(rows) == 6
    by_id = {r["unqDetecID"]: r for r in detections}
    assert by_id["ARR-A69-1-1-2"]["station"] == ""  # a null station stays empty, the row stays
    assert by_id["ARR-A69-1-1-1"]["station"] == "S1"  # the detection's own station, not a deployment's
    assert {r["scientificName"] for r in detections} == {"Gadus morhua"}
    assert result.warnings == ["1 detections on receiver 009 (node A) have no deployment at their time"]


async def test_qualified_lists_each_detection_once_and_reports_each_unplaced_receiver(
    awkward: dict[str, str], tmp_path: Path
) -> None:
    result = await build_extract(awkward, "ARR", 2021, "q", tmp_path)
    rows = csv_rows(result)
    assert sorted(r["catalogNumber"] for r in rows) == ["A69-1-1-1", "A69-1-1-2", "A69-1-3-3", "A69-1-3-4"]
    assert result.summary == {"B.TAG": 4}
    assert any("receiver 009" in w and "no deployment" in w for w in result.warnings), result.warnings

    later = await build_extract(awkward, "ARR", 2022, "q", tmp_path / "2022")
    assert [r["catalogNumber"] for r in csv_rows(later)] == ["A69-1-3-5"]
    assert any("receiver 007" in w and "no deployment" in w for w in later.warnings), later.warnings
