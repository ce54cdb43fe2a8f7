"""Build one detection extract from every node database: stream COPY output to a CSV, then zip + Parquet."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import BinaryIO, TypeVar

import asyncpg

from services.extractor.engine import queries as q
from services.extractor.engine.files import needs_zip64, sha256_of, write_parquet, write_zip, write_zip_from
from services.extractor.engine.growing import CsvProgress, GrowingFile
from services.extractor.engine.result import BuiltFile, ExtractInputError, ExtractResult
from services.extractor.engine.sessions import NodeSessions
from services.extractor.engine.stream import CrlfWriter, merge_spools
from shared.extract_list import FIRST_YEAR
from shared.formats import (
    FORMATS,
    FormatError,
    Layout,
    check_type,
    extract_basename,
    layout,
    split_project_code,
)
from shared.nodes import NodeUnavailable, connect

Progress = Callable[[int], None]
T = TypeVar("T")
FOLLOWER_NICE = 5
# a lookup this small joins well without statistics; ANALYZE would cost a small extract ~10 ms per table
ANALYZE_ABOVE = 1000


def _check_inputs(code: str, year: int, type_code: str, fmt: str) -> tuple[str | None, str, str]:
    try:
        t = check_type(type_code)
    except FormatError as exc:
        raise ExtractInputError(str(exc)) from None
    if fmt not in FORMATS:
        raise ExtractInputError(f"extract format {fmt!r} is not one of {', '.join(FORMATS)}")
    latest = dt.date.today().year + 1  # a push near the new year may list next year's first detections
    if not isinstance(year, int) or not FIRST_YEAR <= year <= latest:
        raise ExtractInputError(f"extract year {year!r} is impossible (expected {FIRST_YEAR}..{latest})")
    node, bare = split_project_code(code)
    if not bare or not bare.replace("_", "").replace("-", "").isalnum():
        raise ExtractInputError(f"project code {code!r} is not a valid code")
    return node, bare, t


async def _open_all(
    nodes: dict[str, str], stack: AsyncExitStack, fmt: str, sessions: NodeSessions | None = None
) -> dict[str, asyncpg.Connection]:
    """Connect to every node at once; closed together on exit. Raises for the first failing node in order.

    Connecting and closing are most of a small extract's time, so all nodes at once, and with `sessions`
    (the extractor service) the connections of the previous build are reused and given back on a clean
    exit. The lookup temp tables are made only on the nodes whose extract query runs (`_make_temps`).
    """

    async def open_one(name: str, url: str) -> asyncpg.Connection:
        if sessions is not None:
            return await sessions.open(name, url, q.SESSION_SETUP[fmt])
        conn = await connect(name, url)
        try:
            await conn.execute(q.SESSION_SETUP[fmt])
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, OSError | asyncpg.PostgresConnectionError):
                raise NodeUnavailable(name, url, exc) from None
            raise
        return conn

    opened = await asyncio.gather(*(open_one(n, u) for n, u in nodes.items()), return_exceptions=True)
    conns = {name: c for name, c in zip(nodes, opened, strict=True) if not isinstance(c, BaseException)}

    async def release(exc_type: type[BaseException] | None, *_exc: object) -> bool:
        if exc_type is not None or len(conns) < len(nodes):
            await _close_all(list(conns.values()), FAILED_CLOSE_TIMEOUT)
        elif sessions is None:
            await _close_all(list(conns.values()))
        else:
            for name, conn in conns.items():
                await sessions.give_back(nodes[name], conn)
        return False

    stack.push_async_exit(release)
    for outcome in opened:
        if isinstance(outcome, BaseException):
            raise outcome
    return conns


async def _close_all(conns: list[asyncpg.Connection], within: float = 10.0) -> None:
    await asyncio.gather(*(c.close(timeout=within) for c in conns), return_exceptions=True)


# A failed or cancelled build's connections may have a query in flight, which a graceful close first waits
# for; a cancel request that reaches the server just before that query starts is ignored, and a query
# waiting for a lock would then hold the extractor (and its SIGTERM) forever. After this, asyncpg aborts.
FAILED_CLOSE_TIMEOUT = 2.0


async def _find_project(conns: dict[str, asyncpg.Connection], bare: str, wanted_node: str | None) -> str:
    """The node that owns the project: its `otn_resources` row names that node (a row elsewhere is a copy)."""
    holders: dict[str, str] = {}
    found = await asyncio.gather(
        *(conn.fetchval(q.PROJECT_NODE_QUERY, bare) for conn in conns.values()), return_exceptions=True
    )
    for name, node in zip(conns, found, strict=True):
        if isinstance(node, asyncpg.UndefinedTableError):
            raise ExtractInputError(f"node {name} has no OTN-style schema (run `otn-push nodes init`)")
        if isinstance(node, BaseException):
            raise node
        if node is not None:
            holders[name] = node
    owners = [name for name, node in holders.items() if node == name] or list(holders)
    if wanted_node is not None:
        if wanted_node not in owners:
            raise ExtractInputError(f"project {wanted_node}.{bare} is not known in node {wanted_node}")
        return wanted_node
    if not owners:
        raise ExtractInputError(f"project {bare} is not known in any node ({', '.join(conns)})")
    if len(owners) > 1:
        raise ExtractInputError(f"project {bare} is registered in several nodes ({', '.join(owners)})")
    return owners[0]


async def _load_animals(conns: dict[str, asyncpg.Connection], owners: dict[str, set[str]]) -> list[tuple]:
    """Animals (catalog, species, common name) of the given projects, read from the nodes that own them."""
    rows: list[tuple] = []
    for node, codes in owners.items():
        if codes:
            rows += [tuple(r) for r in await conns[node].fetch(q.ANIMALS_OF_PROJECTS_QUERY, sorted(codes))]
    return rows


async def _make_temps(conn: asyncpg.Connection) -> None:
    await conn.execute(q.TEMP_TABLES)


async def _fill_temp(conn: asyncpg.Connection, table: str, records: list[tuple], columns: list[str]) -> None:
    if records:
        await conn.copy_records_to_table(table, records=records, columns=columns, schema_name="pg_temp")
        if len(records) > ANALYZE_ABOVE:
            await conn.execute(f"ANALYZE pg_temp.{table}")


def _tmp_path(out_dir: Path, final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=out_dir)
    os.fchmod(fd, 0o644)
    os.close(fd)
    return Path(name)


async def build_extract(
    nodes: dict[str, str],
    code: str,
    year: int,
    type_code: str,
    out_dir: Path,
    fmt: str = "2025",
    progress: Progress | None = None,
    sessions: NodeSessions | None = None,
) -> ExtractResult:
    """Build `<code>_<type>_detections_<year>.zip` and `.parquet` in out_dir (see engine/__init__.py).

    `sessions`: node connections to reuse across builds (the extractor service keeps them open)."""
    started = time.perf_counter()
    wanted_node, bare, t = _check_inputs(code, year, type_code, fmt)
    if wanted_node is not None and wanted_node not in nodes:
        raise ExtractInputError(f"node {wanted_node} of project {code!r} is not a configured node")
    lay = layout(t, fmt)
    basename = extract_basename(bare, t, year)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    summary: dict[str, int] = {}
    timings: dict[str, float] = {}

    async with AsyncExitStack() as stack:
        conns = await _open_all(nodes, stack, fmt, sessions)
        home = await _find_project(conns, bare, wanted_node)
        spec = q.ExtractSpec(bare, home, year, t, fmt)
        temps: list[Path] = []

        def cleanup() -> None:
            for p in temps:
                with suppress(FileNotFoundError):
                    p.unlink()

        stack.callback(cleanup)
        csv_tmp = _tmp_path(out_dir, out_dir / f"{basename}.csv")
        temps.append(csv_tmp)
        zip_final, pq_final = out_dir / f"{basename}.zip", out_dir / f"{basename}.parquet"
        zip_tmp, pq_tmp = _tmp_path(out_dir, zip_final), _tmp_path(out_dir, pq_final)
        temps += [zip_tmp, pq_tmp]
        csv_written = CsvProgress()
        # zip and Parquet follow the CSV as it is written: a big extract's rows take PostgreSQL many
        # seconds to send, while the extractor's cores would otherwise wait
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="extract-follower")
        stack.callback(pool.shutdown, wait=False)
        followers = asyncio.gather(
            loop.run_in_executor(
                pool, _behind, timings, "zip", _zip_following, csv_tmp, csv_written, basename, zip_tmp
            ),
            loop.run_in_executor(
                pool, _behind, timings, "parquet", _parquet_following, csv_tmp, csv_written, lay, pq_tmp
            ),
        )
        try:
            rows = await _write_csv(conns, spec, lay, csv_tmp, out_dir, temps, summary, warnings, progress)
        except BaseException:
            csv_written.fail()
            await asyncio.gather(followers, return_exceptions=True)
            raise
        csv_written.complete()
        if rows == 0:
            warnings.append(f"no detections for {year} (header-only file)")
        timings["csv"] = time.perf_counter() - started
        _zipped, pq_rows = await followers
        if pq_rows != rows:
            raise RuntimeError(f"Parquet has {pq_rows} rows but the CSV has {rows}")
        if needs_zip64(csv_tmp.stat().st_size):  # rare (> 2 GB): made again with ZIP64 headers
            await asyncio.to_thread(write_zip, csv_tmp, f"{basename}.csv", zip_tmp)
        zip_sha, pq_sha = await asyncio.gather(
            asyncio.to_thread(sha256_of, zip_tmp), asyncio.to_thread(sha256_of, pq_tmp)
        )
        os.replace(zip_tmp, zip_final)
        os.replace(pq_tmp, pq_final)
        files = [
            BuiltFile(zip_final.name, zip_final, zip_final.stat().st_size, zip_sha, "zip"),
            BuiltFile(pq_final.name, pq_final, pq_final.stat().st_size, pq_sha, "parquet"),
        ]
    if progress is not None:
        progress(rows)
    timings["total"] = time.perf_counter() - started
    return ExtractResult(
        code=bare,
        year=year,
        type=t,
        format=fmt,
        node=home,
        basename=basename,
        files=files,
        rows=rows,
        summary=summary,
        warnings=warnings,
        timings=timings,
    )


async def _write_csv(
    conns: dict[str, asyncpg.Connection],
    spec: q.ExtractSpec,
    lay: Layout,
    csv_tmp: Path,
    out_dir: Path,
    temps: list[Path],
    summary: dict[str, int],
    warnings: list[str],
    progress: Progress | None,
) -> int:
    """Plan the extract (counts, warnings, lookups) and stream its CSV; returns the row count."""
    home = spec.node
    if spec.type_code == "t":
        contributing = await _matched_plan(conns, spec, summary, warnings)
        animals = await _load_animals(conns, {home: {spec.code}})
        for name in contributing:
            await _make_temps(conns[name])
            await _fill_temp(conns[name], "x_animals", animals, ["catalog", "sci", "common"])
        return await _stream_matched(conns, spec, lay, contributing, csv_tmp, out_dir, temps, progress)
    await _receiver_plan(conns, spec, summary, warnings)
    return await _stream_receiver(conns[home], spec, lay, csv_tmp, progress)


def _timed(timings: dict[str, float], phase: str, work: Callable[..., T], *args: object) -> T:
    started = time.perf_counter()
    result = work(*args)
    timings[phase] = time.perf_counter() - started
    return result


def _behind(timings: dict[str, float], phase: str, work: Callable[..., T], *args: object) -> T:
    """`work` at a lower CPU priority (Linux: per thread; the pool's threads end with the build), so that
    receiving the COPY stream keeps its pace and the followers use the CPU time it leaves."""
    with suppress(OSError):
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, me) + FOLLOWER_NICE)
    return _timed(timings, phase, work, *args)


def _zip_following(csv_tmp: Path, written: CsvProgress, basename: str, zip_tmp: Path) -> None:
    with GrowingFile(csv_tmp, written) as src:
        try:
            write_zip_from(src, f"{basename}.csv", zip_tmp)
        except RuntimeError:  # zipfile: a member over 2 GB needs ZIP64 headers; made again after the CSV
            if not needs_zip64(csv_tmp.stat().st_size):
                raise


def _parquet_following(csv_tmp: Path, written: CsvProgress, lay: Layout, pq_tmp: Path) -> int:
    with GrowingFile(csv_tmp, written) as src:
        return write_parquet(src, lay, pq_tmp)


async def _matched_plan(
    conns: dict[str, asyncpg.Connection], spec: q.ExtractSpec, summary: dict[str, int], warnings: list[str]
) -> list[str]:
    """Count rows per node and receiver project; return the nodes that contribute rows, in node order."""
    contributing: list[str] = []
    stats_sql = q.matched_stats_query(spec)
    per_node = await asyncio.gather(*(conn.fetch(stats_sql) for conn in conns.values()))  # nodes at once
    for (name, conn), stats in zip(conns.items(), per_node, strict=True):
        n_node = 0
        unplaced = 0
        for r in stats:
            summary[r["label"]] = summary.get(r["label"], 0) + r["n"]
            n_node += r["n"]
            unplaced += r["unplaced"]
        if name == spec.node:
            releases = await conn.fetchval(q.release_count_query(spec))
            if releases:
                label = f"{spec.node}.{spec.code}"
                summary[label] = summary.get(label, 0) + releases
                n_node += releases
        if unplaced:
            for r in await conn.fetch(q.matched_unplaced_query(spec)):
                warnings.append(
                    f"{r['n']} detections on receiver {r['receiver']} (node {name}) "
                    "have no deployment at their time"
                )
        if n_node:
            contributing.append(name)
    return contributing


async def _stream_matched(
    conns: dict[str, asyncpg.Connection],
    spec: q.ExtractSpec,
    lay: Layout,
    contributing: list[str],
    csv_tmp: Path,
    out_dir: Path,
    temps: list[Path],
    progress: Progress | None,
) -> int:
    with csv_tmp.open("wb") as out:
        out.write(lay.header())
        if len(contributing) <= 1:
            if not contributing:
                return 0
            node = contributing[0]
            writer = CrlfWriter(out, progress)

            async def sink(chunk: bytes) -> None:
                writer.feed(chunk)

            sql = q.matched_query(spec, lay, with_releases=node == spec.node, with_key=False)
            await conns[node].copy_from_query(sql, output=sink, format="csv")
            writer.close()
            return writer.rows
        spool_paths: list[Path] = []
        for node in contributing:
            spool = _tmp_path(out_dir, out_dir / f".spool-{node.lower()}")
            temps.append(spool)
            spool_paths.append(spool)
            sql = q.matched_query(spec, lay, with_releases=node == spec.node, with_key=True)
            await conns[node].copy_from_query(sql, output=spool, format="csv")
        loop = asyncio.get_running_loop()

        def report(rows: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, rows)

        return await asyncio.to_thread(_merge_files, spool_paths, out, report)


def _merge_files(paths: list[Path], out: BinaryIO, progress: Progress | None) -> int:
    handles = [p.open("rb") for p in paths]
    try:
        return merge_spools(handles, out, progress)
    finally:
        for h in handles:
            h.close()


async def _receiver_plan(
    conns: dict[str, asyncpg.Connection], spec: q.ExtractSpec, summary: dict[str, int], warnings: list[str]
) -> None:
    """Counts per tag project; loads the trackers and their animals from their own nodes into temp tables."""
    home = conns[spec.node]
    stats = await home.fetch(q.receiver_stats_query(spec))
    trackers = sorted({r["tracker"] for r in stats if r["tracker"]})
    found: dict[str, tuple] = {}
    owners: dict[str, set[str]] = {}
    if trackers:
        per_node = await asyncio.gather(*(conn.fetch(q.TRACKERS_QUERY, trackers) for conn in conns.values()))
        for name, rows in zip(conns, per_node, strict=True):
            for r in rows:
                if r["node"] == name or r["code"] not in found:
                    found[r["code"]] = (r["node"], r["shares"], r["poc"], r["pi"], name)
        for code, (_node, _shares, _poc, _pi, held_in) in found.items():
            owners.setdefault(held_in, set()).add(code)
    label = {c: f"{v[0]}.{c}" for c, v in found.items()}
    for r in stats:
        if spec.type_code == "u":
            key = f"{spec.node}.{spec.code}"
        else:
            key = label.get(r["tracker"], r["tracker"] or "")
        summary[key] = summary.get(key, 0) + r["n"]
    if sum(r["unplaced"] for r in stats):
        for r in await home.fetch(q.receiver_unplaced_query(spec)):
            warnings.append(
                f"{r['n']} detections on receiver {r['receiver']} have no deployment at their time"
            )
    missing = [c for c in trackers if c not in found]
    if missing and spec.type_code != "u":
        warnings.append(f"tag projects not found in any node: {', '.join(missing)}")
    tracker_rows = [(c, label[c], v[1], v[2], v[3]) for c, v in sorted(found.items())]
    await _make_temps(home)
    await _fill_temp(home, "x_trackers", tracker_rows, ["code", "label", "shares", "poc", "pi"])
    animals = await _load_animals(conns, owners)
    await _fill_temp(home, "x_animals", animals, ["catalog", "sci", "common"])


async def _stream_receiver(
    conn: asyncpg.Connection, spec: q.ExtractSpec, lay: Layout, csv_tmp: Path, progress: Progress | None
) -> int:
    with csv_tmp.open("wb") as out:
        out.write(lay.header())
        writer = CrlfWriter(out, progress)

        async def sink(chunk: bytes) -> None:
            writer.feed(chunk)

        await conn.copy_from_query(q.receiver_query(spec, lay), output=sink, format="csv")
        writer.close()
        return writer.rows
