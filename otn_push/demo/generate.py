"""Fill initialised node databases with a generated OTN-style network (`otn-push demo`, `demo seed`).

Projects, contacts, animals and tag releases go to the node of their project; receiver deployments and
detections to the node of the receiver (array) project; the extract list to the home node. Detections are
written with COPY in batches as they are generated. Every node is written in one transaction: on an error
nothing is left half-written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg

from otn_push.demo.detections import COLUMNS, Record, Tally, generate_detections
from otn_push.demo.model import Contact, wkb_point
from otn_push.demo.network import Network, build_network
from shared.calendar import PushCalendar
from shared.nodes import connect, ensure_partitions
from shared.nodeschema import (
    CR,
    MATCH_ANIMAL,
    MATCH_SENTINEL,
    MATCH_UNQUALIFIED,
    ROLE_PI,
    ROLE_POC,
    A,
    C,
    D,
    L,
    M,
    P,
    R,
)

DEFAULT_DETECTIONS = 6000
BATCH_SIZE = 20_000
TYPE_ORDER = "tqus"


@dataclass(frozen=True)
class NetworkSummary:
    seed: int
    push_date: dt.date
    home_node: str
    years: list[int]
    projects: dict[str, str]  # code -> node
    project_kinds: dict[str, str]  # code -> tracker | deployment | data
    per_node: dict[str, dict[str, int]]  # node -> {projects, animals, releases, deployments, detections}
    detections: int
    by_relationship: dict[str, int]
    cross_node_matches: int
    fractional_seconds: int
    extracts: list[str]  # `CODE,YEAR,TYPE` rows listed for push_date, in list order


async def generate_network(
    nodes: dict[str, str],
    *,
    seed: int = 7,
    push_date: dt.date,
    detections: int = DEFAULT_DETECTIONS,
    years: int | None = None,
    home_node: str | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> NetworkSummary:
    """Generate the network into `nodes` (name -> URL, schema initialised, no projects yet).

    `progress` is called with the number of detections written so far after every batch.
    """
    net = build_network(
        list(nodes), seed=seed, push_date=push_date, detections=detections, years=years, home_node=home_node
    )
    tally = Tally()
    async with AsyncExitStack() as stack:
        conns: dict[str, asyncpg.Connection] = {}
        for node, url in nodes.items():
            conn = await connect(node, url)
            stack.push_async_callback(conn.close)
            await _check_empty(node, conn)
            conns[node] = conn
        transactions = []
        for conn in conns.values():
            tr = conn.transaction()
            await tr.start()
            transactions.append(tr)
        try:
            for conn in conns.values():
                await ensure_partitions(conn, net.years)
            await _write_metadata(net, conns)
            written = await _write_detections(net, conns, tally, batch_size, progress)
            extracts = _extract_rows(net, tally)
            await _write_list(net, conns[net.home_node], extracts)
        except BaseException:
            for conn, tr in zip(conns.values(), transactions, strict=True):
                try:
                    await tr.rollback()
                except Exception:
                    conn.terminate()  # the server rolls back a transaction whose connection is gone
            raise
        for tr in transactions:
            await tr.commit()
        for conn in conns.values():
            await conn.execute("ANALYZE")
    return _summary(net, tally, written, extracts)


async def _check_empty(node: str, conn: asyncpg.Connection) -> None:
    try:
        found = await conn.fetchval(f"SELECT count(*) FROM {P.table}")
    except asyncpg.UndefinedTableError:
        raise ValueError(
            f"node {node}: the OTN-style schema is missing (run `otn-push nodes init`)"
        ) from None
    if found:
        raise ValueError(f"node {node}: database already holds {found} projects; the demo needs empty nodes")


def _split(table: str) -> tuple[str, str]:
    schema, name = table.split(".")
    return schema, name


async def _copy(conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[Record]) -> None:
    if rows:
        schema, name = _split(table)
        await conn.copy_records_to_table(name, schema_name=schema, columns=list(columns), records=rows)


async def _write_metadata(net: Network, conns: dict[str, asyncpg.Connection]) -> None:
    by_node: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    contact_ids: dict[str, dict[Contact, int]] = defaultdict(dict)
    for p in net.projects.values():
        rows = by_node[p.node]
        rows["projects"].append(
            (p.code, p.node, p.kind, p.shortname, p.longname, p.institution, p.citation, p.local_area,
             p.shares_species, p.date_modified)
        )  # fmt: skip
        ids = contact_ids[p.node]
        for role, people in ((ROLE_PI, p.pis), (ROLE_POC, p.pocs)):
            for position, person in enumerate(people, start=1):
                if person not in ids:
                    ids[person] = len(ids) + 1
                    rows["contacts"].append((ids[person], person.name, person.email))
                rows["roles"].append((p.code, ids[person], role, position))
    for a in net.animals:
        by_node[net.node_of(a.project)]["animals"].append(
            (a.catalog, a.project, a.scientific_name, a.common_name, False)
        )
    for r in net.releases:
        by_node[net.node_of(r.project)]["releases"].append(
            (r.tagname, r.catalog, r.project, r.kind, r.time, r.locality, r.latitude, r.longitude,
             wkb_point(r.longitude, r.latitude), r.life_days, r.harvest, r.date_modified, r.notes)
        )  # fmt: skip
    for d in net.deployments:
        by_node[net.node_of(d.project)]["moorings"].append(
            (d.catalog, d.project, d.station, d.serial, d.model, d.deploy, d.recovery, d.latitude,
             d.longitude, d.bottom_depth, d.receiver_depth)
        )  # fmt: skip
    for node, conn in conns.items():
        rows = by_node.get(node, {})
        await _copy(conn, P.table, [P.code, P.node, P.project_type, P.shortname, P.longname, P.institution,
                                    P.citation, P.local_area, P.shares_species, P.date_modified],
                    rows.get("projects", []))  # fmt: skip
        await _copy(conn, C.table, [C.id, C.name, C.email], rows.get("contacts", []))
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{C.table}', '{C.id}'), "
            f"coalesce((SELECT max({C.id}) FROM {C.table}), 0) + 1, false)"
        )
        await _copy(conn, CR.table, [CR.project, CR.contact, CR.role, CR.position], rows.get("roles", []))
        await _copy(conn, A.table, [A.catalog, A.project, A.scientific_name, A.common_name, A.placeholder],
                    rows.get("animals", []))  # fmt: skip
        await _copy(conn, R.table, [R.tagname, R.catalog, R.project, R.tag_kind, R.release_time, R.locality,
                                    R.latitude, R.longitude, R.geom, R.est_tag_life_days, R.harvest_date,
                                    R.date_modified, R.notes], rows.get("releases", []))  # fmt: skip
        await _copy(conn, M.table, [M.catalog, M.project, M.station, M.receiver, M.model, M.deploy_date,
                                    M.recovery_date, M.latitude, M.longitude, M.bottom_depth,
                                    M.receiver_depth], rows.get("moorings", []))  # fmt: skip


def _batches(net: Network, tally: Tally, batch_size: int) -> Iterator[tuple[str, list[Record]]]:
    """Generated rows grouped per node into batches of about `batch_size`."""
    buffers: dict[str, list[Record]] = defaultdict(list)
    for node, rows in generate_detections(net, tally):
        buffer = buffers[node]
        buffer.extend(rows)
        if len(buffer) >= batch_size:
            yield node, buffer
            buffers[node] = []
    for node, buffer in buffers.items():
        if buffer:
            yield node, buffer


async def _write_detections(
    net: Network,
    conns: dict[str, asyncpg.Connection],
    tally: Tally,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> dict[str, int]:
    """COPY the batches while the next ones are generated in a thread (at most a few batches in memory).

    Generation is CPU work in Python, COPY is mostly PostgreSQL's work: overlapping them, and copying to
    the nodes concurrently (one COPY at a time per connection), keeps both busy.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, list[Record]] | None] = asyncio.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        def put(item: tuple[str, list[Record]] | None) -> None:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        try:
            for batch in _batches(net, tally, batch_size):
                if stop.is_set():
                    return
                put(batch)
        finally:
            put(None)

    written: Counter[str] = Counter()
    in_flight: dict[str, asyncio.Task[None]] = {}

    async def copy(node: str, rows: list[Record]) -> None:
        await _copy(conns[node], D.table, COLUMNS, rows)
        written[node] += len(rows)
        if progress is not None:
            progress(sum(written.values()))

    producer = loop.run_in_executor(None, produce)
    try:
        while (item := await queue.get()) is not None:
            node, rows = item
            if node in in_flight:
                await in_flight.pop(node)
            in_flight[node] = asyncio.create_task(copy(node, rows))
        await asyncio.gather(*in_flight.values())
        await producer  # raises what the generator raised
    except BaseException:
        stop.set()
        # let running COPYs end rather than cancel them: a connection cut mid-COPY cannot roll back cleanly
        await asyncio.gather(*in_flight.values(), return_exceptions=True)
        while not producer.done():  # unblock a producer waiting on a full queue
            while not queue.empty():
                queue.get_nowait()
            await asyncio.sleep(0.01)
        raise
    return dict(written)


def _extract_rows(net: Network, tally: Tally) -> list[str]:
    """The list rows the matching step would insert: every (project, year, type) that has rows."""
    found: set[tuple[str, int, str]] = set()
    for (array, year, relationship, tracker), n in tally.rows.items():
        if not n:
            continue
        if relationship == MATCH_ANIMAL and tracker is not None:
            found.add((tracker, year, "t"))
            if tracker != array:
                found.add((array, year, "q"))
        elif relationship == MATCH_UNQUALIFIED:
            found.add((array, year, "u"))
        elif relationship == MATCH_SENTINEL:
            found.add((array, year, "s"))
    order = {code: i for i, code in enumerate(net.projects)}
    ordered = sorted(found, key=lambda k: (order[k[0]], k[1], TYPE_ORDER.index(k[2])))
    return [f"{code},{year},{kind}" for code, year, kind in ordered]


async def _write_list(net: Network, conn: asyncpg.Connection, extracts: list[str]) -> None:
    order = {code: i for i, code in enumerate(net.projects)}

    def link(code: str) -> str:
        return f"https://gitlab.example.org/otn-data/{net.node_of(code).lower()}/-/issues/{120 + order[code]}"

    # the push before this one, from the calendar (rows of an earlier push, already completed)
    before = PushCalendar().latest_on_or_before(net.push_date - dt.timedelta(days=1))
    previous = before.date if before is not None else net.push_date - dt.timedelta(weeks=16)
    done = dt.datetime.combine(previous + dt.timedelta(days=27), dt.time(15, 30), tzinfo=dt.UTC)
    earlier = [e for e in extracts if e.split(",")[1] == str(net.years[0])][:4]
    rows: list[tuple[object, ...]] = [(e, link(e.split(",")[0]), previous, True, done) for e in earlier]
    rows += [(e, link(e.split(",")[0]), net.push_date, False, None) for e in extracts]
    await conn.executemany(
        f"INSERT INTO {L.table} ({L.detection_extract}, {L.git_issue_link}, {L.push_date}, {L.completed}, "
        f"{L.completed_at}) VALUES ($1, $2, $3, $4, $5)",
        rows,
    )


def _summary(net: Network, tally: Tally, written: dict[str, int], extracts: list[str]) -> NetworkSummary:
    per_node: dict[str, dict[str, int]] = {
        node: {
            "projects": 0,
            "animals": 0,
            "releases": 0,
            "deployments": 0,
            "detections": written.get(node, 0),
        }
        for node in net.nodes
    }
    for p in net.projects.values():
        per_node[p.node]["projects"] += 1
    for a in net.animals:
        per_node[net.node_of(a.project)]["animals"] += 1
    for r in net.releases:
        per_node[net.node_of(r.project)]["releases"] += 1
    for d in net.deployments:
        per_node[net.node_of(d.project)]["deployments"] += 1
    by_relationship: Counter[str] = Counter()
    for (_array, _year, relationship, _tracker), n in tally.rows.items():
        by_relationship[relationship] += n
    return NetworkSummary(
        seed=net.seed,
        push_date=net.push_date,
        home_node=net.home_node,
        years=net.years,
        projects={code: p.node for code, p in net.projects.items()},
        project_kinds={code: p.kind for code, p in net.projects.items()},
        per_node=per_node,
        detections=tally.total,
        by_relationship=dict(by_relationship),
        cross_node_matches=tally.cross_node,
        fractional_seconds=tally.fractional,
        extracts=extracts,
    )
