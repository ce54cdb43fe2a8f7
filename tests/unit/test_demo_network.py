"""The demo generator without a database: matching rules, determinism, exact sizes, value shapes."""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections import Counter

import pytest

from otn_push.demo.detections import COLUMNS, Tally, generate_detections
from otn_push.demo.matching import DeploymentIndex, ReleaseIndex, Unplaceable
from otn_push.demo.model import GRACE, Deployment, TagRelease, wkb_point
from otn_push.demo.network import build_network

PUSH = dt.date(2026, 2, 19)
T0 = dt.datetime(2024, 3, 1, 12)


def release(tag: str, catalog: str, time: dt.datetime, *, life: int | None = 365, **kw: object) -> TagRelease:
    return TagRelease(
        tagname=tag,
        catalog=catalog,
        project=str(kw.pop("project", "NSBS")),
        kind=str(kw.pop("kind", "animal")),
        time=time,
        locality="Eastern Passage, Nova Scotia",
        latitude=44.2,
        longitude=-63.2,
        life_days=life,
        harvest=kw.pop("harvest", None),  # type: ignore[arg-type]
        date_modified=time.date(),
    )


def deployment(station: str, serial: str, deploy: dt.datetime, recovery: dt.datetime | None) -> Deployment:
    return Deployment("HFX", station, serial, "VR2AR", deploy, recovery, 44.4, -63.4, 80.0, 78.0, 0.0, "HFX")


def rows_of(net: object) -> list[tuple[object, ...]]:
    return [row for _node, rows in generate_detections(net) for row in rows]  # type: ignore[arg-type]


def test_detection_is_placed_at_the_deployment_in_the_water() -> None:
    first = deployment("HFX002", "545844", dt.datetime(2023, 4, 11, 9), dt.datetime(2024, 4, 10, 9))
    second = deployment("HFX001", "545844", dt.datetime(2024, 4, 11, 9), None)
    index = DeploymentIndex([second, first])
    assert index.place("545844", dt.datetime(2024, 1, 1)) is first
    assert index.place("545844", dt.datetime(2025, 6, 1)) is second
    with pytest.raises(Unplaceable, match="545844"):  # between recovery and redeployment
        index.place("545844", dt.datetime(2024, 4, 10, 20))
    with pytest.raises(Unplaceable):
        index.place("999999", dt.datetime(2024, 1, 1))


def test_release_window_harvest_life_grace_ambiguity_and_sentinels() -> None:
    harvested = release("A69-9002-1", "NSBS-1", T0, life=1000, harvest=T0 + dt.timedelta(days=30))
    short = release("A69-9002-2", "NSBS-2", T0, life=100)
    dup_a = release("A69-9002-3", "NSBS-3", T0, life=400)
    dup_b = release("A69-9002-3", "NSBS-4", T0 + dt.timedelta(days=200), life=400)
    reused_a = release("A69-9002-5", "NSBS-5", T0, life=900, harvest=T0 + dt.timedelta(days=10))
    reused_b = release("A69-9002-5", "NSBS-6", T0 + dt.timedelta(days=50), life=900)
    sentinel = release("A69-1601-9", "HFX-SENTINEL-01", T0, life=3650, kind="sentinel", project="HFX")
    idx = ReleaseIndex([harvested, short, dup_a, dup_b, reused_a, reused_b, sentinel])
    day = dt.timedelta(days=1)

    assert idx.match("A69-9002-1", T0 + 29 * day).animal == "NSBS-1"
    assert idx.match("A69-9002-1", T0 + 31 * day).relationship == "unqualified"  # after the harvest
    assert idx.match("A69-9002-1", T0 - day).relationship == "unqualified"  # before the release
    end = T0 + 100 * day + GRACE
    assert idx.match("A69-9002-2", end).animal == "NSBS-2"  # tag life + grace still matches
    assert idx.match("A69-9002-2", end + day).relationship == "unqualified"
    assert idx.match("A69-9002-3", T0 + 100 * day).animal == "NSBS-3"
    assert idx.match("A69-9002-3", T0 + 300 * day).relationship == "unqualified"  # two candidates
    assert idx.match("A69-9002-5", T0 + 5 * day).animal == "NSBS-5"
    assert idx.match("A69-9002-5", T0 + 20 * day).relationship == "unqualified"  # between the animals
    assert idx.match("A69-9002-5", T0 + 60 * day).animal == "NSBS-6"
    hit = idx.match("A69-1601-9", T0 + 60 * day)
    assert (hit.relationship, hit.tracker, hit.animal) == ("sentinel", "HFX", None)
    assert idx.match("A69-1303-77777", T0).relationship == "unqualified"


def test_wkb_point_is_plain_little_endian() -> None:
    geom = wkb_point(-63.4689, 44.42022)
    assert len(geom) == 21
    assert geom.hex().upper().startswith("0101000000")
    assert struct.unpack("<dd", geom[5:]) == (-63.4689, 44.42022)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = rows_of(build_network(["OTN", "ACT", "FACT"], seed=11, push_date=PUSH, detections=3000))
    b = rows_of(build_network(["OTN", "ACT", "FACT"], seed=11, push_date=PUSH, detections=3000))
    c = rows_of(build_network(["OTN", "ACT", "FACT"], seed=12, push_date=PUSH, detections=3000))
    assert a == b
    assert a != c


@pytest.mark.parametrize("detections", [1000, 4321, 25_000])
def test_exactly_the_requested_number_of_detections(detections: int) -> None:
    net = build_network(["OTN", "ACT"], seed=3, push_date=PUSH, detections=detections)
    tally = Tally()
    rows = [row for _node, rows in generate_detections(net, tally) for row in rows]
    assert len(rows) == detections == tally.total
    ids = [row[COLUMNS.index("detection_id")] for row in rows]
    assert len(set(ids)) == len(ids)


def test_rows_follow_the_node_schema_conventions() -> None:
    net = build_network(["OTN", "ACT", "FACT"], seed=5, push_date=PUSH, detections=4000)
    col = {name: i for i, name in enumerate(COLUMNS)}
    rows = rows_of(net)
    moorings = {d.catalog: d for d in net.deployments}
    years = Counter(row[col["datecollected"]].year for row in rows)  # type: ignore[attr-defined]
    assert set(years) == {2024, 2025}
    for row in rows:
        dep = moorings[row[col["rcvrcatnumber"]]]  # type: ignore[index]
        assert re.fullmatch(
            r"[A-Z0-9]+-VR2(W|AR|Tx)-\d+-\d{4}_\d\d_\d\dT\d\d", str(row[col["rcvrcatnumber"]])
        )
        assert (row[col["receiver"]], row[col["station"]]) == (dep.serial, dep.station)
        assert row[col["the_geom"]] == wkb_point(dep.longitude, dep.latitude)
        assert row[col["latitude"]] == round(dep.latitude, 5)
        assert row[col["codespace"]] == "-".join(str(row[col["tagname"]]).split("-")[:2])
        assert dep.in_water(row[col["datecollected"]])  # type: ignore[arg-type]
        for value in row:
            assert value != ""  # empty text is NULL
        if row[col["relationshiptype"]] == "animal":
            assert row[col["relatedcatalogitem"]] and row[col["trackercode"]]
        if row[col["sensortype"]] in ("pressure", "temperature"):
            assert row[col["sensorname"]] == row[col["tagname"]]
            assert row[col["sensorvalue"]] is not None and row[col["sensorunit"]] in ("Meters", "°C")
    fractional = [r for r in rows if r[col["datecollected"]].microsecond]  # type: ignore[attr-defined]
    assert 0 < len(fractional) < len(rows)


def test_invalid_requests_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least two nodes"):
        build_network(["OTN"], seed=1, push_date=PUSH, detections=5000)
    with pytest.raises(ValueError, match="at least 1000"):
        build_network(["OTN", "ACT"], seed=1, push_date=PUSH, detections=10)
    with pytest.raises(ValueError, match="home node XYZ"):
        build_network(["OTN", "ACT"], seed=1, push_date=PUSH, detections=5000, home_node="XYZ")


def test_large_network_adds_many_projects_with_a_few_huge_ones() -> None:
    net = build_network(["OTN", "ACT", "FACT"], seed=9, push_date=PUSH, detections=2_000_000)
    assert len(net.projects) > 20
    assert len(net.years) >= 4
    weights = sorted((p.weight for p in net.projects.values() if p.has_receivers), reverse=True)
    assert weights[0] > 5 * weights[-1]
    assert {p.kind for p in net.projects.values()} == {"tracker", "deployment", "data"}
