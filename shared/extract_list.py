"""The push's extract list (`obis.detection_extracts_list`): parsing `CODE,YEAR,TYPE` and list row access.

Rows are written by people and scripts, so parsing is strict about anything ambiguous and lenient only
where the meaning is certain: stray spaces, a lower-case code, an upper-case type letter and a node
prefix that names the project's own node (`OTN.NSBS`) are normalised, and each normalisation is reported.
Everything else (wrong number of parts, other separators, a year that is not a plausible 4-digit year,
an unknown type letter or project, characters that could reach outside a folder or into SQL) is
rejected with a reason that quotes the row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg

from shared.messages import ExtractKey
from shared.nodes import NodeUnavailable, connection
from shared.nodeschema import L, P

TYPES = {"t": "matched", "q": "qualified", "u": "unqualified", "s": "sentinel"}
FIRST_YEAR = 1960  # acoustic telemetry records start in the 1960s; anything earlier is a typo
CODE_RE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
_OTHER_SEPARATORS = (";", "|", "\t", "/", ":")


class ExtractListError(ValueError):
    """One list entry cannot be used; the message quotes it and says why."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{_quote(text)}: {reason}")
        self.text = text
        self.reason = reason


def _quote(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return repr(shown)


@dataclass(frozen=True)
class ParsedExtract:
    key: ExtractKey
    notes: tuple[str, ...] = ()
    node_prefix: str | None = None  # `OTN` of `OTN.NSBS`: must be the project's node


def parse_extract(text: str, *, max_year: int | None = None) -> ParsedExtract:
    """Parse one `CODE,YEAR,TYPE` entry (e.g. `NSBS,2022,t`); raises ExtractListError with the reason.

    `max_year` is the latest possible year (the push date's year); default: this year.
    """
    if text is None or not text.strip():
        raise ExtractListError(text or "", "empty entry; expected CODE,YEAR,TYPE such as NSBS,2022,t")
    notes: list[str] = []
    parts = text.split(",")
    if len(parts) != 3:
        used = [s for s in _OTHER_SEPARATORS if s in text]
        if len(parts) == 1 and used:
            shown = ", ".join(repr(s) for s in used)
            raise ExtractListError(text, f"separated by {shown}; expected commas: CODE,YEAR,TYPE")
        if len(parts) == 1 and len(text.split()) == 3:
            raise ExtractListError(text, "separated by spaces; expected commas: CODE,YEAR,TYPE")
        raise ExtractListError(text, f"has {len(parts)} comma-separated parts; expected 3: CODE,YEAR,TYPE")
    raw_code, raw_year, raw_type = parts
    code, year_text, type_code = raw_code.strip(), raw_year.strip(), raw_type.strip()
    if (code, year_text, type_code) != (raw_code, raw_year, raw_type):
        notes.append("removed stray spaces")
    if not code:
        raise ExtractListError(text, "project code is empty")
    if code != code.upper():
        notes.append(f"code {code!r} upper-cased")
        code = code.upper()
    prefix: str | None = None
    head, dot, tail = code.partition(".")
    if dot and CODE_RE.fullmatch(head) and CODE_RE.fullmatch(tail):  # both parts non-empty: unambiguous
        prefix, code = head, tail
        notes.append(f"node prefix {prefix} removed")
    if not CODE_RE.fullmatch(code):
        raise ExtractListError(
            text, f"project code {code!r} has characters other than A-Z, 0-9, _ and - (or is too long)"
        )
    if not year_text.isascii() or not year_text.isdigit():
        raise ExtractListError(text, f"year {year_text!r} is not a number")
    year = int(year_text)
    latest = max_year if max_year is not None else dt.date.today().year
    if len(year_text) != 4 or not FIRST_YEAR <= year <= latest:
        raise ExtractListError(text, f"year {year_text} is impossible (expected {FIRST_YEAR}..{latest})")
    if type_code.lower() in TYPES and type_code != type_code.lower():
        notes.append(f"type {type_code!r} lower-cased")
        type_code = type_code.lower()
    if type_code not in TYPES:
        known = ", ".join(f"{k} ({v})" for k, v in TYPES.items())
        raise ExtractListError(text, f"unknown extract type {type_code!r}; expected one of {known}")
    key = ExtractKey(code=code, year=year, type=type_code)  # type: ignore[arg-type]
    return ParsedExtract(key, tuple(notes), prefix)


@dataclass(frozen=True)
class ListRow:
    id: int | None
    text: str
    issue_link: str | None = None
    push_date: dt.date | None = None
    completed: bool = False


@dataclass
class PlannedJob:
    key: ExtractKey
    node: str
    list_row_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    text: str
    reason: str
    list_row_ids: tuple[int, ...] = ()

    def describe(self) -> str:
        rows = f"list row {', '.join(map(str, self.list_row_ids))} " if self.list_row_ids else ""
        return f"{rows}{_quote(self.text)}: {self.reason}"


def plan_jobs(
    rows: Iterable[ListRow],
    projects: dict[str, str],
    *,
    max_year: int | None = None,
    unreachable: Sequence[str] = (),
) -> tuple[list[PlannedJob], list[Rejected]]:
    """Turn list rows into one job per distinct extract (carrying all its row ids) and the rejects.

    `projects` maps every known project code (from all nodes' `otn_resources`) to its node. While some
    nodes are `unreachable`, a code found nowhere may be theirs: it becomes a job (node unknown) that the
    extractor retries and fails naming the node, instead of being refused as unknown.
    """
    jobs: dict[tuple[str, int, str], PlannedJob] = {}
    rejected: list[Rejected] = []
    for row in rows:
        ids = (row.id,) if row.id is not None else ()
        try:
            parsed = parse_extract(row.text, max_year=max_year)
        except ExtractListError as exc:
            rejected.append(Rejected(row.text, exc.reason, ids))
            continue
        key = parsed.key
        notes, prefix = parsed.notes, parsed.node_prefix
        node = projects.get(key.code)
        if node is None and unreachable:
            missing = ", ".join(unreachable)
            notes = (*notes, f"project {key.code} not found on the reachable nodes ({missing} unreachable)")
            node = prefix or ""
        if node is None:
            reason = f"unknown project {key.code} (in no node's project table)"
            rejected.append(Rejected(row.text, reason, ids))
            continue
        if prefix is not None and node and prefix != node.upper():
            reason = f"prefix {prefix} but project {key.code} is on node {node}"
            rejected.append(Rejected(row.text, reason, ids))
            continue
        job = jobs.get((key.code, key.year, key.type))
        if job is None:
            job = jobs[(key.code, key.year, key.type)] = PlannedJob(key=key, node=node)
        elif ids:
            job.notes.append(f"listed again in row {ids[0]}: made once")
        job.list_row_ids.extend(ids)
        job.notes.extend(f"{_quote(row.text)}: {n}" for n in notes)
    return list(jobs.values()), rejected


# --- list rows in the home node database (asyncpg) -------------------------------------------------


async def known_projects(nodes: dict[str, str], unreachable: list[str] | None = None) -> dict[str, str]:
    """Every project code of every node's `otn_resources`, mapped to its node name (upper case).

    With `unreachable` given, a node that cannot be reached is skipped and its name appended there
    (otherwise NodeUnavailable is raised).
    """
    found: dict[str, str] = {}
    for name, url in nodes.items():
        try:
            async with connection(name, url) as conn:
                for rec in await conn.fetch(f"SELECT {P.code}, {P.node} FROM {P.table}"):
                    found[str(rec[0]).upper()] = str(rec[1] or name).upper()
        except NodeUnavailable:
            if unreachable is None:
                raise
            unreachable.append(name)
    return found


def _row(rec: asyncpg.Record) -> ListRow:
    return ListRow(
        id=rec["id"],
        text=rec["detection_extract"],
        issue_link=rec["git_issue_link"],
        push_date=rec["push_date"],
        completed=bool(rec["completed"]),
    )


_SELECT = (
    f"SELECT {L.id} AS id, {L.detection_extract} AS detection_extract, {L.git_issue_link} AS git_issue_link, "
    f"{L.push_date} AS push_date, {L.completed} AS completed, {L.completed_at} AS completed_at, "
    f"{L.date_added} AS date_added FROM {L.table}"
)


async def list_rows(
    conn: asyncpg.Connection, push_date: dt.date, *, pending_only: bool = False
) -> list[ListRow]:
    where = f" WHERE {L.push_date} = $1" + (f" AND NOT {L.completed}" if pending_only else "")
    return [_row(r) for r in await conn.fetch(_SELECT + where + f" ORDER BY {L.id}", push_date)]


async def list_records(conn: asyncpg.Connection, push_date: dt.date) -> list[asyncpg.Record]:
    """Every column of the date's rows (for display)."""
    return list(await conn.fetch(_SELECT + f" WHERE {L.push_date} = $1 ORDER BY {L.id}", push_date))


async def add_rows(
    conn: asyncpg.Connection, push_date: dt.date, entries: Sequence[str], issue_link: str | None = None
) -> list[int]:
    """Insert list rows (one transaction); returns their ids."""
    async with conn.transaction():
        return [
            await conn.fetchval(
                f"INSERT INTO {L.table} ({L.detection_extract}, {L.git_issue_link}, {L.push_date}) "
                f"VALUES ($1, $2, $3) RETURNING {L.id}",
                entry,
                issue_link,
                push_date,
            )
            for entry in entries
        ]


async def mark_completed(conn: asyncpg.Connection, row_ids: Sequence[int]) -> int:
    """Set `completed = true, completed_date = now()` on rows not completed yet; returns rows changed."""
    if not row_ids:
        return 0
    status = await conn.execute(
        f"UPDATE {L.table} SET {L.completed} = true, {L.completed_at} = now() "
        f"WHERE {L.id} = ANY($1::bigint[]) AND NOT {L.completed}",
        list(row_ids),
    )
    return int(status.split()[-1])


@dataclass(frozen=True)
class ListActivity:
    pending: int
    last_added: dt.datetime | None


async def list_activity(conn: asyncpg.Connection, push_date: dt.date) -> ListActivity:
    """How many rows of the date are not completed, and when the latest row was added."""
    rec = await conn.fetchrow(
        f"SELECT count(*) FILTER (WHERE NOT {L.completed}) AS pending, max({L.date_added}) AS last_added "
        f"FROM {L.table} WHERE {L.push_date} = $1",
        push_date,
    )
    assert rec is not None
    return ListActivity(pending=int(rec["pending"]), last_added=rec["last_added"])
