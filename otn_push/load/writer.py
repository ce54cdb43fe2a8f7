"""Writing collected records into the node databases: COPY into temp tables, then set-based upserts.

Upserts "fill in, never blank out": a value in the file replaces the stored one, an empty value keeps it.
Project-level values (citation, institution, local area, species sharing, contacts) are replaced only by
a file at least as recent as the one that set them, judged by the file's dates (its latest
`dateLastModified`, else its latest detection), kept in `otn_resources.datelastmodified`; an older file
only fills in what is missing. A project is held by one node: a file that would register it in another
node than the one holding it is refused.
A detection whose stored time is the same instant cut to the minute (a re-saved file that lost its
seconds, e.g. the PROJ61 sample) is the same detection: the time with seconds wins whichever comes first.
All nodes a file touches are written in one transaction each, committed only after every node succeeded.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import asyncpg

from otn_push.load.collect import DETECTION_COLUMNS, Collected, NodeBatch
from otn_push.load.reader import LoadError
from shared.nodes import connect, ensure_partitions, init_schema
from shared.nodeschema import CR, A, C, D, M, P, R

PROJECT_COLUMNS = [
    P.code, P.node, P.project_type, P.institution, P.citation, P.local_area, P.shares_species,
    P.date_modified,
]  # fmt: skip
ANIMAL_COLUMNS = [A.catalog, A.project, A.scientific_name, A.common_name, A.placeholder]
RELEASE_COLUMNS = [
    R.tagname, R.catalog, R.project, R.tag_kind, R.release_time, R.locality, R.latitude, R.longitude,
    R.geom, R.est_tag_life_days, R.harvest_date, R.date_modified, R.notes,
]  # fmt: skip
MOORING_COLUMNS = [
    M.catalog, M.project, M.station, M.receiver, M.model, M.deploy_date, M.recovery_date, M.latitude,
    M.longitude, M.bottom_depth, M.receiver_depth,
]  # fmt: skip


@dataclass
class NodeCounts:
    projects: int = 0
    animals: int = 0
    releases: int = 0
    moorings: int = 0
    detections: int = 0


@dataclass
class WriteReport:
    file: str
    kind: str
    rows: int
    nodes: dict[str, NodeCounts] = field(default_factory=dict)


def _fill_in(columns: list[str], keys: list[str], special: dict[str, str] | None = None) -> str:
    special = special or {}
    sets = [f"{c} = {special.get(c, f'COALESCE(s.{c}, t.{c})')}" for c in columns if c not in keys]
    return ", ".join(sets)


async def _upsert(
    conn: asyncpg.Connection,
    table: str,
    columns: list[str],
    keys: list[str],
    records: list[tuple],
    special: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> None:
    if not records:
        return
    tmp = "tmp_" + table.rsplit(".", 1)[1]
    await conn.execute(
        f"CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
    )
    await conn.copy_records_to_table(tmp, records=records, columns=columns, schema_name="pg_temp")
    match = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    await conn.execute(f"UPDATE {table} t SET {_fill_in(columns, keys, special)} FROM {tmp} s WHERE {match}")
    defaults = defaults or {}
    select = ", ".join(f"COALESCE(s.{c}, {defaults[c]})" if c in defaults else f"s.{c}" for c in columns)
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM {tmp} s ON CONFLICT DO NOTHING"
    )


def file_as_of(collected: Collected) -> dt.date | None:
    """How recent the file is: its latest `dateLastModified`, else the day of its latest detection."""
    modified = DETECTION_COLUMNS.index(D.date_modified)
    collected_at = DETECTION_COLUMNS.index(D.datecollected)
    release_modified = RELEASE_COLUMNS.index(R.date_modified)
    dates: list[dt.date] = []
    times: list[dt.date] = []
    for batch in collected.nodes.values():
        dates += [d[modified] for d in batch.detections.values() if d[modified] is not None]
        dates += [r[release_modified] for r in batch.releases.values() if r[release_modified] is not None]
        times += [d[collected_at].date() for d in batch.detections.values() if d[collected_at] is not None]
    return max(dates) if dates else (max(times) if times else None)


def _newer_or_fill(column: str) -> str:
    """The file's value when it is at least as recent as the stored one's, else only fill in."""
    return (
        f"CASE WHEN t.{P.date_modified} IS NULL OR s.{P.date_modified} >= t.{P.date_modified} "
        f"THEN COALESCE(s.{column}, t.{column}) ELSE COALESCE(t.{column}, s.{column}) END"
    )


async def _write_projects(conn: asyncpg.Connection, batch: NodeBatch, as_of: dt.date | None) -> None:
    codes = list(batch.projects)
    stored = {
        r[0]: r[1]
        for r in await conn.fetch(
            f"SELECT {P.code}, {P.date_modified} FROM {P.table} WHERE {P.code} = ANY($1::text[])", codes
        )
    }
    # the same test as _newer_or_fill, for the contacts
    newer = {c for c in codes if stored.get(c) is None or (as_of is not None and as_of >= stored[c])}
    records = [
        (p.code, p.node, p.project_type, p.institution, p.citation, p.local_area, p.shares_species, as_of)
        for p in batch.projects.values()
    ]
    special = {
        c: _newer_or_fill(c) for c in (P.node, P.institution, P.citation, P.local_area, P.shares_species)
    }
    special[P.project_type] = (
        f"CASE WHEN s.{P.project_type} = t.{P.project_type} THEN t.{P.project_type} ELSE 'data' END"
    )
    special[P.date_modified] = f"GREATEST(s.{P.date_modified}, t.{P.date_modified})"
    await _upsert(
        conn,
        P.table,
        PROJECT_COLUMNS,
        [P.code],
        records,
        special=special,
        defaults={P.shares_species: "true"},
    )
    contacts = [
        (p.code, role, position, name, email, p.code in newer)
        for p in batch.projects.values()
        for role, people in p.contacts.items()
        for position, (name, email) in enumerate(people, start=1)
    ]
    if not contacts:
        return
    await conn.execute(
        "CREATE TEMP TABLE tmp_contacts (code text, role text, position int, name text, email text, "
        "newer boolean) ON COMMIT DROP"
    )
    await conn.copy_records_to_table("tmp_contacts", records=contacts, schema_name="pg_temp")
    await conn.execute(
        f"INSERT INTO {C.table} ({C.name}, {C.email}) SELECT DISTINCT name, email FROM tmp_contacts "
        "ON CONFLICT DO NOTHING"
    )
    # an older file's contacts only fill a role that has none
    await conn.execute(
        f"DELETE FROM tmp_contacts s WHERE NOT s.newer AND EXISTS (SELECT 1 FROM {CR.table} t "
        f"WHERE t.{CR.project} = s.code AND t.{CR.role} = s.role)"
    )
    await conn.execute(
        f"DELETE FROM {CR.table} t USING (SELECT DISTINCT code, role FROM tmp_contacts) s "
        f"WHERE t.{CR.project} = s.code AND t.{CR.role} = s.role"
    )
    await conn.execute(
        f"""INSERT INTO {CR.table} ({CR.project}, {CR.contact}, {CR.role}, {CR.position})
        SELECT s.code, c.{C.id}, s.role, s.position FROM tmp_contacts s
        JOIN {C.table} c ON c.{C.name} = s.name AND c.{C.email} = s.email ON CONFLICT DO NOTHING"""
    )


async def _write_detections(conn: asyncpg.Connection, batch: NodeBatch) -> None:
    records = list(batch.detections.values())
    if not records:
        return
    cols = list(DETECTION_COLUMNS)
    await ensure_partitions(conn, batch.years())
    await conn.execute(
        f"CREATE TEMP TABLE tmp_detections ON COMMIT DROP AS SELECT {', '.join(cols)} "
        f"FROM {D.table} WITH NO DATA"
    )
    await conn.copy_records_to_table("tmp_detections", records=records, columns=cols, schema_name="pg_temp")
    same = f"o.{D.project} = s.{D.project} AND o.{D.detection_id} = s.{D.detection_id}"
    t_o, t_s = f"o.{D.datecollected}", f"s.{D.datecollected}"
    # the file's time is the stored one cut to the minute: keep the stored, precise time
    await conn.execute(
        f"UPDATE tmp_detections s SET {D.datecollected} = {t_o} FROM {D.table} o "
        f"WHERE {same} AND {t_o} <> {t_s} AND date_trunc('minute', {t_o}) = {t_s}"
    )
    # the stored time is the file's cut to the minute: the stored row takes the precise time
    await conn.execute(
        f"UPDATE {D.table} o SET {D.datecollected} = {t_s} FROM tmp_detections s "
        f"WHERE {same} AND {t_o} <> {t_s} AND date_trunc('minute', {t_s}) = {t_o}"
    )
    keys = [D.project, D.detection_id, D.datecollected]
    match = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    await conn.execute(f"UPDATE {D.table} t SET {_fill_in(cols, keys)} FROM tmp_detections s WHERE {match}")
    await conn.execute(
        f"INSERT INTO {D.table} ({', '.join(cols)}) SELECT {', '.join('s.' + c for c in cols)} "
        "FROM tmp_detections s ON CONFLICT DO NOTHING"
    )


async def _write_node(conn: asyncpg.Connection, batch: NodeBatch, as_of: dt.date | None) -> NodeCounts:
    await _write_projects(conn, batch, as_of)
    animals = [(cat, *rest) for cat, rest in batch.animals.items()]
    await _upsert(
        conn, A.table, ANIMAL_COLUMNS, [A.catalog], animals,
        special={A.placeholder: f"t.{A.placeholder} AND COALESCE(s.{A.placeholder}, true)"},
    )  # fmt: skip
    await _upsert(
        conn, R.table, RELEASE_COLUMNS, [R.catalog, R.tagname, R.release_time], list(batch.releases.values())
    )
    moorings = [tuple(m) for m in batch.moorings.values()]
    await _upsert(
        conn, M.table, MOORING_COLUMNS, [M.catalog], moorings,
        special={
            M.deploy_date: f"LEAST(s.{M.deploy_date}, t.{M.deploy_date})",
            M.recovery_date: f"GREATEST(s.{M.recovery_date}, t.{M.recovery_date})",
        },
    )  # fmt: skip
    await _write_detections(conn, batch)
    return NodeCounts(
        len(batch.projects),
        len(batch.animals),
        len(batch.releases),
        len(batch.moorings),
        len(batch.detections),
    )


async def _resolve_animals(conns: dict[str, asyncpg.Connection], collected: Collected) -> None:
    """Qualified rows name a tag, not an animal: use the tag project's real animal released before the
    detection when its node knows one, else keep the placeholder `<TRACKER>-<tagName>`."""
    wanted: dict[str, set[tuple[str, str]]] = {}
    for batch in collected.nodes.values():
        for trk_node, trk_code, tag, _when in batch.pending_animals.values():
            wanted.setdefault(trk_node, set()).add((trk_code, tag))
    releases: dict[tuple[str, str], list[tuple[dt.datetime, str]]] = {}
    for node, pairs in wanted.items():
        rows = await conns[node].fetch(
            f"SELECT {R.project} AS p, {R.tagname} AS tag, {R.release_time} AS t, {R.catalog} AS cat "
            f"FROM {R.table} WHERE ({R.project}, {R.tagname}) IN "
            f"(SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY 1, 2, 3",
            [p for p, _ in pairs],
            [t for _, t in pairs],
        )
        for r in rows:
            releases.setdefault((r["p"], r["tag"]), []).append((r["t"], r["cat"]))
    used: set[tuple[str, str]] = set()
    for batch in collected.nodes.values():
        for key, (trk_node, trk_code, tag, when) in batch.pending_animals.items():
            found = releases.get((trk_code, tag), [])
            i = bisect.bisect_right([t for t, _ in found], when)
            if i:
                det = batch.detections[key]
                batch.detections[key] = (*det[:-1], found[i - 1][1])
            else:
                used.add((trk_node, f"{trk_code}-{tag}"))
    for node, batch in collected.nodes.items():
        for catalog in [c for c, a in batch.animals.items() if a[3] and (node, c) not in used]:
            del batch.animals[catalog]


async def _refuse_projects_held_elsewhere(
    nodes: dict[str, str], conns: dict[str, asyncpg.Connection], collected: Collected
) -> None:
    """A project lives in one node: registering it in a second one (the same legacy file loaded with
    another --node) would make its extracts ambiguous, so the file is refused naming the holder."""
    wanted = {code: node for node, batch in collected.nodes.items() for code in batch.projects}
    if not wanted:
        return
    for other in sorted(nodes):
        async with AsyncExitStack() as stack:
            conn = conns.get(other)
            if conn is None:
                conn = await connect(other, nodes[other])
                stack.push_async_callback(conn.close)
            held = await conn.fetch(
                f"SELECT {P.code} FROM {P.table} WHERE {P.code} = ANY($1::text[])", list(wanted)
            )
        clashes = sorted(str(r[0]) for r in held if wanted[str(r[0])] != other)
        if clashes:
            code = clashes[0]
            more = f" (and {', '.join(clashes[1:])})" if len(clashes) > 1 else ""
            raise LoadError(
                collected.file,
                f"project {code}{more} is already held by node {other}; this file would register it in "
                f"node {wanted[code]} too (load it with --node {other}, or remove it from {other} first)",
            )


async def write_collected(
    nodes: dict[str, str], collected: Collected, status: Callable[[str], None] | None = None
) -> WriteReport:
    """Write one parsed file into its nodes; every node's transaction commits only if all succeeded."""
    report = WriteReport(collected.file, collected.kind, collected.rows)
    async with AsyncExitStack() as stack:
        conns: dict[str, asyncpg.Connection] = {}
        needed = set(collected.nodes)
        for batch in collected.nodes.values():
            needed |= {v[0] for v in batch.pending_animals.values()}
        for node in sorted(needed):
            conn = await connect(node, nodes[node])
            stack.push_async_callback(conn.close)
            await init_schema(conn)
            conns[node] = conn
        await _refuse_projects_held_elsewhere(nodes, conns, collected)
        await _resolve_animals(conns, collected)
        as_of = file_as_of(collected)
        transactions = []
        for node in sorted(collected.nodes):
            tr = conns[node].transaction()
            await tr.start()
            transactions.append(tr)
        try:
            for node in sorted(collected.nodes):
                if status is not None:
                    status(f"writing node {node}")
                report.nodes[node] = await _write_node(conns[node], collected.nodes[node], as_of)
        except BaseException:
            for tr in transactions:
                await tr.rollback()
            raise
        for tr in transactions:
            await tr.commit()
    return report
