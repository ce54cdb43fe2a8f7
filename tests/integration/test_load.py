"""`otn-push load`: values in the wild are read, bad files are refused whole, second loads fill in."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest

from otn_push.load import LoadError, load_files
from services.extractor.engine import build_extract
from shared.nodes import connection
from tests.conftest import NodeFactory

pytestmark = pytest.mark.integration

TABLES = [
    "otn_resources",
    "contacts_projects",
    "otn_animals",
    "otn_tag_releases",
    "moorings",
    "otn_detections",
]


async def counts(nodes: dict[str, str]) -> dict[str, int]:
    found = {}
    for node, url in nodes.items():
        async with connection(node, url) as conn:
            for t in TABLES:
                found[f"{node}.{t}"] = await conn.fetchval(f"SELECT count(*) FROM obis.{t}")
    return found


def sample_rows(samples_dir: Path) -> tuple[list[str], list[list[str]]]:
    with zipfile.ZipFile(samples_dir / "nsbs_matched_detections_2022.zip") as zf:
        text = zf.read("nsbs_matched_detections_2022.csv").decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.samples
async def test_a_bad_time_in_row_n_refuses_the_file_and_loads_nothing(
    make_nodes: NodeFactory, samples_dir: Path, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN", "ACT")
    header, rows = sample_rows(samples_dir)
    rows = rows[:300]
    rows[249][header.index("dateCollectedUTC")] = "2022-13-45 25:00:00"
    bad = write_csv(tmp_path / "bad_time.csv", header, rows)
    good = write_csv(tmp_path / "good.csv", header, rows[:200])
    with pytest.raises(LoadError) as err:
        await load_files(nodes, [good, bad])
    message = str(err.value)
    assert "bad_time.csv" in message and "row 250" in message and "dateCollectedUTC" in message
    assert set((await counts(nodes)).values()) == {0}  # not even the good file before it


@pytest.mark.samples
async def test_a_missing_column_refuses_the_file(
    make_nodes: NodeFactory, samples_dir: Path, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN", "ACT")
    header, rows = sample_rows(samples_dir)
    drop = header.index("unqDetecID")
    path = write_csv(
        tmp_path / "no_id.csv",
        [h for i, h in enumerate(header) if i != drop],
        [[v for i, v in enumerate(r) if i != drop] for r in rows[:20]],
    )
    with pytest.raises(LoadError, match=r"no_id\.csv.*column unqDetecID.*missing column"):
        await load_files(nodes, [path])
    assert set((await counts(nodes)).values()) == {0}


async def test_files_without_node_prefix_need_node_and_unknown_nodes_are_refused(
    make_nodes: NodeFactory, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN")
    header = [
        "collectioncode",
        "catalognumber",
        "detectedby",
        "receiver",
        "tagname",
        "datecollected",
        "unqdetecid",
    ]
    path = write_csv(
        tmp_path / "legacy.csv", header, [["P1", "P1-1", "P2", "123", "A69-1-2", "2020-01-01", "P2-x-5"]]
    )
    with pytest.raises(LoadError, match=r"legacy\.csv, row 1, column collectioncode: .*--node"):
        await load_files(nodes, [path])
    prefixed = write_csv(
        tmp_path / "elsewhere.csv",
        header,
        [["OTN.P1", "P1-1", "MARS.P2", "1", "A69-1-2", "2020-01-01", "P2-x-5"]],
    )
    with pytest.raises(LoadError, match=r"row 1, column detectedby: node MARS"):
        await load_files(nodes, [prefixed])


async def test_a_zip_with_two_csvs_is_refused(make_nodes: NodeFactory, tmp_path: Path) -> None:
    nodes = await make_nodes("OTN")
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "x\r\n")
        zf.writestr("b.csv", "x\r\n")
    with pytest.raises(LoadError, match=r"two\.zip.*exactly one CSV"):
        await load_files(nodes, [path])


QUALIFIED_HEADER = (
    "basisofrecord,institutioncode,collectioncode,datelastmodified,datecollected,timezone,trackercode,"
    "fieldnumber,catalognumber,station,collectornumber,latitude,longitude,rcvrcatnumber,sensorname,sensorraw,"
    "the_geom,notes,tag_contact_pi,tag_contact_poc,scientificname"
).split(",")


def qualified_row(detection: int, when: str, sci: str = "NA", serial: str = "0012345") -> list[str]:
    return [
        "MachineObservation", "INST", "ARR", "2020-01-01", when, "UTC", "TRK", "A69-1601-1",
        f"A69-1601-1-{detection}", "ST1", serial, "38.5", "-76.25", f"ST1-VR2W-{serial}-2017_03_30T10",
        "NA", "NA", "0101000000000000000010534000000000004043C0", "NA",
        "Pat Smith (pat@x.org)", "Lee Wong (lee@x.org), Sam Roe (sam@y.org)", sci,
    ]  # fmt: skip


async def test_values_in_the_wild_are_read_and_a_second_file_fills_in(
    make_nodes: NodeFactory, tmp_path: Path
) -> None:
    nodes = await make_nodes("ACT")
    first = write_csv(
        tmp_path / "arr_qualified_detections_2017.csv",
        QUALIFIED_HEADER,
        [qualified_row(1, "2017-04-08T05:34:00Z"), qualified_row(2, "2017-04-08 05:40:12.25")],
    )
    await load_files(nodes, [first], default_node="act")
    async with connection("ACT", nodes["ACT"]) as conn:
        rows = await conn.fetch(
            "SELECT detection_id, receiver, datecollected::text AS t, sensorname, relatedcatalogitem, "
            "codespace FROM obis.otn_detections ORDER BY detection_id"
        )
        assert [(r["detection_id"], r["t"]) for r in rows] == [
            (1, "2017-04-08 05:34:00"),
            (2, "2017-04-08 05:40:12.25"),
        ]
        assert {r["receiver"] for r in rows} == {"0012345"}  # leading zeros kept
        assert {r["sensorname"] for r in rows} == {None}  # NA is empty
        assert {r["relatedcatalogitem"] for r in rows} == {"TRK-A69-1601-1"}  # placeholder animal
        assert {r["codespace"] for r in rows} == {"A69-1601"}
        animal = await conn.fetchrow("SELECT * FROM obis.otn_animals")
        assert animal["is_placeholder"] and animal["scientificname"] is None
        mooring = await conn.fetchrow("SELECT * FROM obis.moorings")
        assert (mooring["rcvrmodel"], mooring["rcvrserial"], mooring["deploy_date"].isoformat()) == (
            "VR2W", "0012345", "2017-03-30T10:00:00",
        )  # fmt: skip
        trk = await conn.fetchrow("SELECT * FROM obis.otn_resources WHERE collectioncode = 'TRK'")
        assert trk["share_species_with_array_owners"] is False  # every scientificname was empty
        contacts = await conn.fetch(
            "SELECT c.name, cp.role, cp.position FROM obis.contacts_projects cp "
            "JOIN obis.contacts c USING (contact_id) ORDER BY cp.role, cp.position"
        )
        assert [(c["name"], c["role"], c["position"]) for c in contacts] == [
            ("Lee Wong", "pointOfContact", 1),
            ("Sam Roe", "pointOfContact", 2),
            ("Pat Smith", "principalInvestigator", 1),
        ]

    # the same detection 1 again, now with its seconds, a species and a sensor name: filled in, not doubled
    second_row = qualified_row(1, "2017-04-08 05:34:27", sci="Morone saxatilis")
    second_row[QUALIFIED_HEADER.index("sensorname")] = "A69-1601-9"
    blank = qualified_row(2, "2017-04-08 05:40:12.25")
    blank[QUALIFIED_HEADER.index("station")] = ""
    second = write_csv(tmp_path / "again.csv", QUALIFIED_HEADER, [second_row, blank])
    before = await counts(nodes)
    await load_files(nodes, [second], default_node="ACT")
    assert await counts(nodes) == before
    async with connection("ACT", nodes["ACT"]) as conn:
        rows = await conn.fetch(
            "SELECT detection_id, datecollected::text AS t, sensorname, station FROM obis.otn_detections "
            "ORDER BY detection_id"
        )
        assert [(r["detection_id"], r["t"], r["sensorname"], r["station"]) for r in rows] == [
            (1, "2017-04-08 05:34:27", "A69-1601-9", "ST1"),
            (2, "2017-04-08 05:40:12.25", None, "ST1"),  # the empty station did not blank it out
        ]
        trk = await conn.fetchrow("SELECT * FROM obis.otn_resources WHERE collectioncode = 'TRK'")
        assert trk["share_species_with_array_owners"] is True
        assert await conn.fetchval("SELECT scientificname FROM obis.otn_animals") == "Morone saxatilis"

    result = await build_extract(nodes, "ARR", 2017, "q", tmp_path / "out")
    with zipfile.ZipFile(result.files[0].path) as zf:
        lines = zf.read("arr_qualified_detections_2017.csv").decode().split("\r\n")
    assert lines[1].split(",")[4:9] == [
        "2017-04-08 05:34:27", "", "ACT.TRK", "A69-1601-1", "A69-1601-1-1",
    ]  # fmt: skip
    assert result.summary == {"ACT.TRK": 2}


@pytest.mark.samples
async def test_the_older_34_column_variant_loads(
    make_nodes: NodeFactory, samples_dir: Path, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN")
    reports = await load_files(nodes, [samples_dir / "blue_shark_detections_old.csv"], default_node="OTN")
    assert reports[0].kind == "matched" and reports[0].rows == 3000
    result = await build_extract(nodes, "NSBS", 2014, "t", tmp_path, fmt="legacy")
    assert result.rows > 0
    assert any(k.startswith("OTN.") for k in result.summary)


async def test_a_zip_with_a_data_description_beside_the_csv_loads(
    make_nodes: NodeFactory, tmp_path: Path
) -> None:
    nodes = await make_nodes("ACT")
    body = io.StringIO(newline="")
    writer = csv.writer(body, lineterminator="\n")  # LF line ends and a BOM are read too
    writer.writerow(QUALIFIED_HEADER)
    writer.writerow(qualified_row(7, "2017-06-01 01:02:03"))
    path = tmp_path / "arr_qualified_detections_2017.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("arr_qualified_detections_2017.csv", "\ufeff" + body.getvalue())
        zf.writestr("data_description.txt", "columns are described here")
    reports = await load_files(nodes, [path], default_node="ACT")
    assert (reports[0].kind, reports[0].rows, reports[0].nodes["ACT"].detections) == ("qualified", 1, 1)


def dated_row(detection: int, modified: str, institution: str, pi: str) -> list[str]:
    row = qualified_row(detection, "2017-04-08 05:34:00")
    row[QUALIFIED_HEADER.index("datelastmodified")] = modified
    row[QUALIFIED_HEADER.index("institutioncode")] = institution
    row[QUALIFIED_HEADER.index("tag_contact_pi")] = pi
    return row


async def project_values(url: str) -> tuple[str | None, list[str]]:
    async with connection("ACT", url) as conn:
        institution = await conn.fetchval(
            "SELECT institutioncode FROM obis.otn_resources WHERE collectioncode = 'ARR'"
        )
        pis = await conn.fetch(
            "SELECT c.name FROM obis.contacts_projects cp JOIN obis.contacts c USING (contact_id) "
            "WHERE cp.collectioncode = 'TRK' AND cp.role = 'principalInvestigator' ORDER BY cp.position"
        )
    return institution, [r["name"] for r in pis]


async def test_an_older_file_does_not_overwrite_project_values(
    make_nodes: NodeFactory, tmp_path: Path
) -> None:
    nodes = await make_nodes("ACT")
    newer = write_csv(
        tmp_path / "newer.csv", QUALIFIED_HEADER, [dated_row(1, "2021-03-01", "NA", "Pat New (pat@x.org)")]
    )
    older = write_csv(
        tmp_path / "older.csv", QUALIFIED_HEADER, [dated_row(1, "2019-01-01", "OLD", "Old Pi (old@x.org)")]
    )
    newest = write_csv(
        tmp_path / "newest.csv",
        QUALIFIED_HEADER,
        [dated_row(1, "2022-05-01", "NEWEST", "Pat New (pat@x.org)")],
    )
    await load_files(nodes, [newer], default_node="ACT")
    assert await project_values(nodes["ACT"]) == (None, ["Pat New"])
    # the older file fills in the missing institution, but does not replace the newer contacts
    await load_files(nodes, [older], default_node="ACT")
    assert await project_values(nodes["ACT"]) == ("OLD", ["Pat New"])
    # a file at least as recent replaces them
    await load_files(nodes, [newest], default_node="ACT")
    assert await project_values(nodes["ACT"]) == ("NEWEST", ["Pat New"])
    await load_files(nodes, [older], default_node="ACT")
    assert await project_values(nodes["ACT"]) == ("NEWEST", ["Pat New"])


async def test_the_same_file_under_another_node_is_refused(make_nodes: NodeFactory, tmp_path: Path) -> None:
    nodes = await make_nodes("ACT", "FACT")
    path = write_csv(tmp_path / "arr.csv", QUALIFIED_HEADER, [qualified_row(1, "2017-04-08 05:34:00")])
    await load_files(nodes, [path], default_node="ACT")
    before = await counts(nodes)
    with pytest.raises(LoadError, match=r"arr.csv: project ARR \(and TRK\) is already held by node ACT"):
        await load_files(nodes, [path], default_node="FACT")
    assert await counts(nodes) == before  # nothing of it written in FACT
    await load_files(nodes, [path], default_node="ACT")  # the same node again is fine
    assert await counts(nodes) == before
