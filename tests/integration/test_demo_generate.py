"""The demo generator against real node databases: every required feature, right matching, determinism."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg
import pytest

from otn_push.demo.generate import NetworkSummary, generate_network
from otn_push.demo.model import wkb_point
from shared.nodes import connection

pytestmark = pytest.mark.integration

PUSH = dt.date(2026, 2, 19)
GRACE = dt.timedelta(days=90)


async def fetch(nodes: dict[str, str], sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one query run on every node, each with a `node` column first."""
    out: list[asyncpg.Record] = []
    for node, url in nodes.items():
        async with connection(node, url) as conn:
            out.extend(await conn.fetch(f"SELECT $1::text AS node, q.* FROM ({sql}) q", node, *args))
    return out


@pytest.fixture
async def network(make_nodes: Any) -> tuple[dict[str, str], NetworkSummary]:
    nodes = await make_nodes("OTN", "ACT", "FACT")
    summary = await generate_network(nodes, seed=7, push_date=PUSH, detections=5000)
    return nodes, summary


async def test_every_required_feature_is_in_the_databases(
    network: tuple[dict[str, str], NetworkSummary],
) -> None:
    nodes, summary = network
    projects = await fetch(
        nodes,
        "SELECT collectioncode, node AS project_node, ois_project_type, share_species_with_array_owners "
        "FROM obis.otn_resources",
    )
    node_of = {p["collectioncode"]: p["node"] for p in projects}
    assert len(projects) >= 6
    assert all(p["project_node"] == p["node"] for p in projects)  # stored in the database of its node
    assert {p["ois_project_type"] for p in projects} == {"tracker", "deployment", "data"}
    assert {p["node"] for p in projects} == set(nodes)  # every node holds projects, in its own database

    # a receiver redeployed: same serial, two deployments at different stations, detections at both
    moved = await fetch(
        nodes, "SELECT rcvrserial FROM obis.moorings GROUP BY 1 HAVING count(DISTINCT station_name) > 1"
    )
    assert moved
    heard = await fetch(
        nodes, "SELECT receiver FROM obis.otn_detections GROUP BY 1 HAVING count(DISTINCT station) > 1"
    )
    assert {r["receiver"] for r in heard} & {m["rcvrserial"] for m in moved}

    # a double-tagged animal: two tags, two releases, both tags detected and matched to it
    double = await fetch(
        nodes,
        "SELECT catalognumber, array_agg(tagname ORDER BY tagname) AS tags FROM obis.otn_tag_releases "
        "GROUP BY 1 HAVING count(DISTINCT tagname) > 1",
    )
    assert len(double) == 1
    animal, tags = double[0]["catalognumber"], double[0]["tags"]
    matched = await fetch(nodes, "SELECT DISTINCT tagname, sensortype FROM obis.otn_detections "
                                 "WHERE relatedcatalogitem = $2", animal)  # fmt: skip
    assert sorted({m["tagname"] for m in matched}) == tags
    assert {m["sensortype"] for m in matched} == {"pressure", "temperature"}

    # every kind of match, in both years
    kinds = await fetch(
        nodes,
        "SELECT relationshiptype, extract(year FROM datecollected)::int AS year, count(*) AS n "
        "FROM obis.otn_detections GROUP BY 1, 2",
    )
    assert {(k["relationshiptype"], k["year"]) for k in kinds} == {
        (kind, year) for kind in ("animal", "unqualified", "sentinel") for year in (2024, 2025)
    }
    assert sum(k["n"] for k in kinds) == summary.detections == 5000

    # sentinel detections belong to the project that registered the test tag
    sentinels = await fetch(
        nodes, "SELECT tagname, collectioncode FROM obis.otn_tag_releases WHERE tag_kind = 'sentinel'"
    )
    owner = {s["tagname"]: s["collectioncode"] for s in sentinels}
    hits = await fetch(nodes, "SELECT DISTINCT tagname, trackercode FROM obis.otn_detections "
                              "WHERE relationshiptype = 'sentinel'")  # fmt: skip
    assert hits and all(owner[h["tagname"]] == h["trackercode"] for h in hits)

    # cross-node matches: animals of one node's project on another node's receivers
    animal_hits = await fetch(nodes, "SELECT DISTINCT collectioncode, trackercode FROM obis.otn_detections "
                                     "WHERE relationshiptype = 'animal'")  # fmt: skip
    cross = [h for h in animal_hits if node_of[h["trackercode"]] != h["node"]]
    assert cross and summary.cross_node_matches > 0
    assert all(
        node_of[h["collectioncode"]] == h["node"] for h in animal_hits
    )  # stored on the receiver's node

    # tag projects that do and do not share species, both seen on other projects' receivers
    sharing = {p["collectioncode"]: p["share_species_with_array_owners"] for p in projects}
    qualified = {h["trackercode"] for h in animal_hits if h["trackercode"] != h["collectioncode"]}
    assert {sharing[code] for code in qualified} == {True, False}

    # contacts: a PI and a point of contact for every project, some people in several projects
    roles = await fetch(
        nodes,
        "SELECT cp.collectioncode, cp.role, c.name, c.email "
        "FROM obis.contacts_projects cp JOIN obis.contacts c USING (contact_id)",
    )
    for code in node_of:
        assert {r["role"] for r in roles if r["collectioncode"] == code} == {
            "principalInvestigator",
            "pointOfContact",
        }
    projects_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in roles:
        projects_of[(r["name"], r["email"])].add(r["collectioncode"])
    assert any(len(codes) > 1 for codes in projects_of.values())
    assert all("@" in email for _name, email in projects_of)


async def test_extract_list_rows_cover_every_type_and_have_data(
    network: tuple[dict[str, str], NetworkSummary],
) -> None:
    nodes, summary = network
    home = {summary.home_node: nodes[summary.home_node]}
    listed = await fetch(
        home,
        "SELECT detection_extract, git_issue_link, completed FROM obis.detection_extracts_list "
        "WHERE push_date = $2 ORDER BY id",
        PUSH,
    )
    labels = [r["detection_extract"] for r in listed]
    assert labels == summary.extracts
    assert not any(r["completed"] for r in listed) and all(r["git_issue_link"] for r in listed)
    parsed = [(code, int(year), kind) for code, year, kind in (label.split(",") for label in labels)]
    assert {kind for _c, _y, kind in parsed} == {"t", "q", "u", "s"}
    assert len({code for code, _y, _k in parsed}) >= 5
    for code, year, kind in parsed:
        where = {
            "t": "trackercode = $2 AND relationshiptype = 'animal'",
            "q": "collectioncode = $2 AND relationshiptype = 'animal' AND trackercode <> $2",
            "u": "collectioncode = $2 AND relationshiptype = 'unqualified'",
            "s": "collectioncode = $2 AND relationshiptype = 'sentinel'",
        }[kind]
        found = await fetch(nodes, f"SELECT count(*) AS n FROM obis.otn_detections WHERE {where} "
                                   f"AND extract(year FROM datecollected) = $3", code, year)  # fmt: skip
        assert sum(f["n"] for f in found) > 0, f"{code},{year},{kind} is listed but has no rows"
    # an earlier push listed some of the same extracts, already completed
    earlier = await fetch(home, "SELECT detection_extract FROM obis.detection_extracts_list "
                                "WHERE push_date < $2 AND completed", PUSH)  # fmt: skip
    assert earlier and {r["detection_extract"] for r in earlier} <= set(labels)


async def test_detections_are_placed_and_matched_as_the_domain_says(
    network: tuple[dict[str, str], NetworkSummary],
) -> None:
    nodes, _summary = network
    moorings = await fetch(nodes, "SELECT * FROM obis.moorings")
    releases = await fetch(nodes, "SELECT * FROM obis.otn_tag_releases")
    detections = await fetch(nodes, "SELECT * FROM obis.otn_detections")
    by_serial = defaultdict(list)
    for m in moorings:
        by_serial[m["rcvrserial"]].append(m)
    by_tag = defaultdict(list)
    for r in releases:
        by_tag[r["tagname"]].append(r)

    def window_end(r: asyncpg.Record) -> dt.datetime:
        if r["harvest_date"] is not None:
            return r["harvest_date"]
        return r["utc_release_date_time"] + dt.timedelta(days=r["est_tag_life_days"]) + GRACE

    after_harvest = 0
    for d in detections:
        t = d["datecollected"]
        placed = [
            m for m in by_serial[d["receiver"]]
            if m["deploy_date"] <= t and (m["recovery_date"] is None or t < m["recovery_date"])
        ]  # fmt: skip
        assert len(placed) == 1, (
            f"detection {d['detection_id']} on {d['receiver']} at {t} placed {len(placed)}x"
        )
        m = placed[0]
        assert m["node"] == d["node"] and m["collectioncode"] == d["collectioncode"]
        assert (d["station"], d["rcvrcatnumber"]) == (m["station_name"], m["catalognumber"])
        assert (d["bottom_depth"], d["receiver_depth"]) == (m["bottom_depth"], m["rcvr_depth"])
        assert bytes(d["the_geom"]) == wkb_point(m["stn_long"], m["stn_lat"])
        assert round(m["stn_lat"], 5) == d["latitude"]

        candidates = [r for r in by_tag[d["tagname"]] if r["utc_release_date_time"] <= t <= window_end(r)]
        if len(candidates) != 1:
            expected = ("unqualified", None, None)
        elif candidates[0]["tag_kind"] == "sentinel":
            expected = ("sentinel", candidates[0]["collectioncode"], None)
        else:
            expected = ("animal", candidates[0]["collectioncode"], candidates[0]["catalognumber"])
        assert (d["relationshiptype"], d["trackercode"], d["relatedcatalogitem"]) == expected
        harvested = [r for r in by_tag[d["tagname"]] if r["harvest_date"] and r["harvest_date"] < t]
        if harvested and not candidates:
            after_harvest += 1
    assert after_harvest > 0, "the network must hold detections of a tag after its harvest date"


async def test_same_seed_gives_the_same_rows_whatever_the_batch_size(make_nodes: Any) -> None:
    a, b, c = [await make_nodes("OTN", "ACT") for _ in range(3)]
    await generate_network(a, seed=21, push_date=PUSH, detections=3000)
    await generate_network(b, seed=21, push_date=PUSH, detections=3000, batch_size=97)
    await generate_network(c, seed=22, push_date=PUSH, detections=3000)
    queries = [
        "SELECT * FROM obis.otn_detections ORDER BY collectioncode, detection_id",
        "SELECT * FROM obis.otn_tag_releases ORDER BY catalognumber, tagname",
        "SELECT * FROM obis.moorings ORDER BY catalognumber",
        "SELECT detection_extract, push_date FROM obis.detection_extracts_list ORDER BY id",
    ]
    for sql in queries:
        rows_a = [tuple(r) for r in await fetch(a, sql)]
        assert rows_a == [tuple(r) for r in await fetch(b, sql)], sql
    detections = queries[0]
    assert [tuple(r) for r in await fetch(a, detections)] != [tuple(r) for r in await fetch(c, detections)]


async def test_refuses_a_node_that_already_holds_data_and_writes_nothing(make_nodes: Any) -> None:
    nodes = await make_nodes("OTN", "ACT")
    await generate_network(nodes, seed=1, push_date=PUSH, detections=1500)
    before = await fetch(nodes, "SELECT count(*) AS n FROM obis.otn_detections")
    with pytest.raises(ValueError, match="already holds"):
        await generate_network(nodes, seed=2, push_date=PUSH, detections=1500)
    assert await fetch(nodes, "SELECT count(*) AS n FROM obis.otn_detections") == before


async def test_a_failure_midway_leaves_no_row_behind(make_nodes: Any) -> None:
    nodes = await make_nodes("OTN", "ACT")

    def explode(written: int) -> None:
        raise RuntimeError(f"stopped after {written}")

    with pytest.raises(RuntimeError, match="stopped after"):
        await generate_network(
            nodes, seed=1, push_date=PUSH, detections=3000, batch_size=500, progress=explode
        )
    for table in ("otn_resources", "otn_detections", "detection_extracts_list", "moorings"):
        counts = await fetch(nodes, f"SELECT count(*) AS n FROM obis.{table}")
        assert all(c["n"] == 0 for c in counts), table
