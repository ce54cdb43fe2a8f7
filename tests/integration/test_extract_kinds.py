"""The extract engine on small hand-made node data: every kind, cross-node merge order, warnings, errors."""

from __future__ import annotations

import csv
import io
import os
import uuid
import zipfile
from pathlib import Path

import asyncpg
import pyarrow.parquet as pq
import pytest

from services.extractor.engine import ExtractInputError, ExtractResult, build_extract
from shared.formats import layout
from shared.nodes import NodeUnavailable, connection, ensure_database, ensure_partitions
from tests.conftest import PG_ADMIN, NodeFactory, pg_url

pytestmark = pytest.mark.integration

POINT = bytes.fromhex("0101000000000000000000F0BF0000000000000040")  # (-1.0, 2.0)

DETECTION_COLUMNS = (
    "collectioncode, detection_id, receiver, station, rcvrcatnumber, latitude, longitude, the_geom, "
    "tagname, codespace, datecollected, datelastmodified, relationshiptype, trackercode, relatedcatalogitem"
)


async def add_project(conn: asyncpg.Connection, code: str, node: str, **extra: object) -> None:
    cols = ["collectioncode", "node", *extra]
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    await conn.execute(
        f"INSERT INTO obis.otn_resources ({', '.join(cols)}) VALUES ({marks})", code, node, *extra.values()
    )


async def add_contact(conn: asyncpg.Connection, project: str, role: str, position: int, name: str) -> None:
    cid = await conn.fetchval(
        "INSERT INTO obis.contacts (name, email) VALUES ($1, $2) RETURNING contact_id",
        name,
        f"{name[0]}@x.org",
    )
    await conn.execute(
        "INSERT INTO obis.contacts_projects VALUES ($1, $2, $3, $4)", project, cid, role, position
    )


async def add_detections(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    import datetime as dt

    await ensure_partitions(conn, {r[10].year for r in rows})
    marks = ", ".join(f"${i}" for i in range(1, 16))
    for r in rows:
        assert isinstance(r[10], dt.datetime)
        await conn.execute(f"INSERT INTO obis.otn_detections ({DETECTION_COLUMNS}) VALUES ({marks})", *r)


def csv_lines(result: ExtractResult) -> list[str]:
    zip_path = next(f.path for f in result.files if f.kind == "zip")
    with zipfile.ZipFile(zip_path) as zf:
        data = zf.read(f"{result.basename}.csv")
    text = data.decode("utf-8-sig")
    assert text.endswith("\r\n")
    return text[:-2].split("\r\n")


def csv_rows(result: ExtractResult) -> list[dict[str, str]]:
    zip_path = next(f.path for f in result.files if f.kind == "zip")
    with zipfile.ZipFile(zip_path) as zf:
        text = zf.read(f"{result.basename}.csv").decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.fixture
async def network(make_nodes: NodeFactory) -> dict[str, str]:
    """ARR (array, node A) with receivers; TAG (tag project, node B) with two animals; ARR2 on node B."""
    import datetime as dt

    nodes = await make_nodes("A", "B")
    t = dt.datetime
    async with connection("A", nodes["A"]) as a, connection("B", nodes["B"]) as b:
        await add_project(a, "ARR", "A", institutioncode="INST", citation='Smith, "A" 2020.\nSecond line')
        await add_contact(a, "ARR", "principalInvestigator", 1, "Ann Arr")
        await a.execute(
            "INSERT INTO obis.moorings (catalognumber, collectioncode, station_name, rcvrserial, rcvrmodel, "
            "deploy_date, recovery_date) VALUES ('S1-VR2W-007-2021_01_01T00', 'ARR', 'S1', '007', 'VR2W', "
            "'2021-01-01', '2021-12-31')"
        )
        await add_project(b, "TAG", "B", share_species_with_array_owners=False)
        await add_contact(b, "TAG", "pointOfContact", 2, "Zed Tag")
        await add_contact(b, "TAG", "pointOfContact", 1, "Bea Tag")
        await add_project(b, "SENT", "B")
        await add_project(b, "ARR2", "B", local_area="Bay")
        for cat in ("TAG-1", "TAG-2"):
            await b.execute(
                "INSERT INTO obis.otn_animals VALUES ($1, 'TAG', 'Gadus morhua', 'cod', false)", cat
            )
        await b.execute(
            "INSERT INTO obis.otn_tag_releases (tagname, catalognumber, collectioncode, "
            "utc_release_date_time, release_locality, release_latitude, release_longitude, release_geom) "
            "VALUES ('A69-1-1', 'TAG-1', 'TAG', '2020-05-01 12:00', 'Harbour', 2.0, -1.0, $1)",
            POINT,
        )
        det = "S1-VR2W-007-2021_01_01T00"
        await add_detections(
            a,
            [
                ("ARR", 11, "007", "S1", det, 2.0, -1.0, POINT, "A69-1-1", "A69-1",
                 t(2021, 3, 1, 10, 0, 0, 500000), None, "animal", "TAG", "TAG-1"),
                ("ARR", 12, "007", "S1", det, 2.0, -1.0, POINT, "A69-1-2", "A69-1",
                 t(2021, 3, 1, 9, 0), None, "animal", "TAG", "TAG-2"),
                ("ARR", 13, "007", "S1", det, 2.0, -1.0, POINT, "A69-9-9", "A69-9",
                 t(2021, 3, 2, 9, 0), None, "unqualified", None, None),
                ("ARR", 14, "008", "S2", None, 3.0, -1.0, POINT, "A69-9-8", "A69-9",
                 t(2021, 3, 3, 9, 0), None, "unqualified", None, None),
                ("ARR", 15, "007", "S1", det, 2.0, -1.0, POINT, "A69-5-5", "A69-5",
                 t(2021, 3, 4, 9, 0), None, "sentinel", "SENT", None),
            ],
        )  # fmt: skip
        await add_detections(
            b,
            [
                ("ARR2", 21, "100", "B1", None, 5.0, -1.0, POINT, "A69-1-1", "A69-1",
                 t(2021, 3, 1, 10, 0, 0, 500000), None, "animal", "TAG", "TAG-1"),
                ("ARR2", 22, "100", "B1", None, 5.0, -1.0, POINT, "A69-1-2", "A69-1",
                 t(2021, 2, 1, 0, 0), None, "animal", "TAG", "TAG-2"),
            ],
        )  # fmt: skip
    return nodes


async def test_matched_merges_nodes_in_order_with_release_rows_first(
    network: dict[str, str], tmp_path: Path
) -> None:
    result = await build_extract(network, "b.tag", 2021, "t", tmp_path)
    rows = csv_rows(result)
    assert [(r["catalogNumber"], r["receiver"], r["detectedBy"]) for r in rows] == [
        ("TAG-1", "release", "B.TAG"),
        ("TAG-1", "007", "A.ARR"),  # same time as the B.ARR2 detection: ties go by project code
        ("TAG-1", "100", "B.ARR2"),
        ("TAG-2", "100", "B.ARR2"),
        ("TAG-2", "007", "A.ARR"),
    ]
    first_det = rows[1]
    assert first_det["dateCollectedUTC"] == "2021-03-01 10:00:00.5"
    assert first_det["decimalLatitude"] == "2.0" and first_det["decimalLongitude"] == "-1.0"
    assert first_det["geometry"] == "0101000020E6100000000000000000F0BF0000000000000040"
    assert first_det["citation"] == 'Smith, "A" 2020.\nSecond line'  # a quoted field keeps its LF
    assert first_det["contactPI"] == "Ann Arr (A@x.org)"
    assert first_det["unqDetecID"] == "ARR-A69-1-1-11"
    assert rows[0]["contactPOC"] == "Bea Tag (B@x.org), Zed Tag (Z@x.org)"
    assert rows[0]["localArea"] == rows[0]["station"] == "Harbour"
    assert rows[2]["localArea"] == "Bay"
    assert result.summary == {"A.ARR": 2, "B.ARR2": 2, "B.TAG": 1}
    assert result.rows == 5 and result.node == "B"
    assert result.warnings == ["2 detections on receiver 100 (node B) have no deployment at their time"]
    assert pq.read_table(next(f.path for f in result.files if f.kind == "parquet")).num_rows == 5
    # every record ends in CRLF; the LF inside the citation stays a bare LF
    zip_path = next(f.path for f in result.files if f.kind == "zip")
    with zipfile.ZipFile(zip_path) as zf:
        data = zf.read(f"{result.basename}.csv")
    assert data.count(b"\r\n") == 6 and data.count(b"\n") == 6 + 2


async def test_qualified_hides_species_of_non_sharing_trackers_and_warns_unplaced(
    network: dict[str, str], tmp_path: Path
) -> None:
    result = await build_extract(network, "ARR", 2021, "q", tmp_path)
    rows = csv_rows(result)
    assert [r["catalogNumber"] for r in rows] == ["A69-1-1-11", "A69-1-2-12"]  # by tagName
    assert {r["trackerCode"] for r in rows} == {"B.TAG"}
    assert {r["scientificName"] for r in rows} == {""}  # TAG does not share species
    assert rows[0]["contactPOC"] == "Bea Tag (B@x.org), Zed Tag (Z@x.org)"
    assert rows[0]["institutionCode"] == "INST" and rows[0]["receiverSerial"] == "007"
    assert rows[0]["geometry"] == POINT.hex().upper()
    assert result.summary == {"B.TAG": 2}
    assert result.warnings == []


async def test_unqualified_and_sentinel_layouts(network: dict[str, str], tmp_path: Path) -> None:
    unq = await build_extract(network, "ARR", 2021, "u", tmp_path)
    assert csv_lines(unq)[0] == ",".join(layout("u").columns)
    assert [r["catalogNumber"] for r in csv_rows(unq)] == ["A69-9-8-14", "A69-9-9-13"]
    assert unq.basename == "arr_unqualified_detections_2021"
    # detection 14 is on receiver 008, which no deployment places: reported, not dropped
    assert unq.warnings == ["1 detections on receiver 008 have no deployment at their time"]
    sen = await build_extract(network, "ARR", 2021, "s", tmp_path)
    assert sen.basename == "arr_sentinel_tag_detections_2021"
    rows = csv_rows(sen)
    assert [(r["trackerCode"], r["tagName"]) for r in rows] == [("B.SENT", "A69-5-5")]
    legacy = await build_extract(network, "ARR", 2021, "u", tmp_path / "legacy", fmt="legacy")
    lines = csv_lines(legacy)
    assert lines[0] == ",".join(layout("u", "legacy").columns)
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert (first["collectioncode"], first["timezone"], first["julianday"], first["timeofday"]) == (
        "ARR", "UTC", "62", "9.0",
    )  # fmt: skip


async def test_a_year_without_detections_gives_a_header_only_file(
    network: dict[str, str], tmp_path: Path
) -> None:
    result = await build_extract(network, "ARR", 2019, "q", tmp_path)
    assert csv_lines(result) == [",".join(layout("q").columns)]
    assert result.rows == 0 and result.warnings == ["no detections for 2019 (header-only file)"]
    assert pq.read_table(next(f.path for f in result.files if f.kind == "parquet")).num_rows == 0


async def test_bad_input_is_a_permanent_error_naming_it(network: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ExtractInputError, match="NOPE"):
        await build_extract(network, "NOPE", 2021, "t", tmp_path)
    with pytest.raises(ExtractInputError, match="'x'"):
        await build_extract(network, "ARR", 2021, "x", tmp_path)
    with pytest.raises(ExtractInputError, match=r"B\.ARR"):
        await build_extract(network, "B.ARR", 2021, "q", tmp_path)
    with pytest.raises(ExtractInputError, match="format"):
        await build_extract(network, "ARR", 2021, "q", tmp_path, fmt="2019")
    assert os.listdir(tmp_path) == []


async def test_an_unreachable_node_is_transient(network: dict[str, str], tmp_path: Path) -> None:
    nodes = {**network, "C": "postgresql://postgres:secret@127.0.0.1:1/nowhere"}
    with pytest.raises(NodeUnavailable) as err:
        await build_extract(nodes, "ARR", 2021, "q", tmp_path)
    assert "secret" not in str(err.value) and "node C" in str(err.value)


async def test_a_failure_while_building_leaves_no_file_behind(
    network: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.extractor.engine import build as build_module

    def broken(*_args: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        await build_extract(network, "ARR", 2021, "q", tmp_path)
    assert os.listdir(tmp_path) == []  # neither final names nor temp files


async def test_a_project_that_exists_on_a_node_without_the_schema_is_a_clear_error(
    network: dict[str, str], tmp_path: Path
) -> None:
    bare = pg_url(f"otn_push_test_{uuid.uuid4().hex[:8]}_bare")
    await ensure_database("BARE", bare)
    try:
        with pytest.raises(ExtractInputError, match="node BARE has no OTN-style schema"):
            await build_extract({**network, "BARE": bare}, "ARR", 2021, "q", tmp_path)
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{bare.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()
